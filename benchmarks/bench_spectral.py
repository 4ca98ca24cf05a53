"""The tools that keep a deep-equilibrium model contracting (issue 32): the spectral radius of
a Jacobian from Jacobian-vector products against the dense Jacobian's eigenvalues, and the
guaranteed spectral normalisation against an SVD's norm, value and gradient."""

import jax
import jax.numpy as jnp

import cakejax as cj
from cakejax.examples import tanh_contraction, TanhCell

from ._common import BACKENDS, compiled, put, run, Suite, warm


class _SpectralRadius(Suite):
    """ρ(∂f/∂x) of x ↦ tanh(W x + U θ) at x = 0 (W symmetric, ρ = 0.9): `cj.spectral_radius`
    (20 Arnoldi steps) against `max(abs(eigvals(jacfwd(f))))`, which needs the n × n Jacobian
    and a dense non-symmetric eigensolver (CPU only in JAX). Timed by
    `bench_headline.Ratios`, interleaved in one process."""

    params = (["arnoldi", "eigvals"], [64, 1000], list(BACKENDS))
    param_names = ("method", "n", "backend")

    def setup(self, method, n, backend):
        W, U, theta = put(backend, tanh_contraction(n, 0.9))
        cell = TanhCell(W, U, theta)
        self.x = put(backend, jnp.zeros(n))
        if method == "eigvals" and backend != "cpu":
            raise NotImplementedError("jnp.linalg.eigvals runs on CPU only")

        def radius(x):
            if method == "arnoldi":
                return cj.spectral_radius(cell, x)
            return jnp.max(jnp.abs(jnp.linalg.eigvals(jax.jacfwd(cell)(x))))

        self.jitted = compiled(("radius", method, n, backend), lambda: warm(radius, self.x))

    def time_radius(self, method, n, backend):
        run(self.jitted, self.x)

    def program(self, method):
        return self.jitted, (self.x,)


class SpectralNormalise(Suite):
    """W scaled to ‖W‖₂ ≤ 0.95, value and gradient of a loss through it: `cj.spectral_normalise`
    (a guaranteed bound by 8 squarings of the Gram matrix) against dividing by
    `jnp.linalg.norm(W, 2)` (an SVD)."""

    params = (["cakejax", "svd"], [64, 128], ["value", "grad"], list(BACKENDS))
    param_names = ("method", "n", "transform", "backend")

    def setup(self, method, n, transform, backend):
        self.W = put(backend, jax.random.normal(jax.random.key(0), (n, n)) / jnp.sqrt(n))
        def normalise(W):
            if method == "cakejax":
                return cj.spectral_normalise(W, 0.95)
            return W * jnp.minimum(1.0, 0.95 / jnp.linalg.norm(W, 2))

        fn = normalise if transform == "value" else jax.grad(lambda W: jnp.sum(normalise(W) ** 2))
        key = ("normalise", method, n, transform, backend)
        self.jitted = compiled(key, lambda: warm(fn, self.W))

    def time_normalise(self, method, n, transform, backend):
        run(self.jitted, self.W)

    def program(self, method):
        return self.jitted, (self.W,)
