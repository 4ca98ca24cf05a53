"""The functions the suites differentiate: every course model and layer as a scalar function
of one array, and the scaled-up problems where size matters."""

import equinox as eqx
import jax
import jax.numpy as jnp

import cakejax as cj

from . import course_baseline as course


CAKE = (1.0, 3.0, 2.0, 1.5)
FEATURES = ((0.8, 0.9, -0.5), (0.7, 0.8, -0.4), (0.3, 0.4, -0.8), (0.9, 0.7, -0.3))
LIKES = (True, True, False, True)


def _like_loss(w):
    model = cj.LikeModel(w, 0.5)
    return cj.like_loss(model, jnp.asarray(FEATURES), jnp.asarray(LIKES))


def _vibration(xy):
    return cj.VibrationScore()(jax.lax.complex(xy[0], xy[1]))


def _clipped(x):
    return cj.Deliciousness()(cj.GradientClip(0.1, mask=jnp.asarray([True, False, False,
                                                                        False]))(x))


def _fixed_point(theta):
    return cj.FixedPoint(cj.DoughMaturity(theta[0], theta[1]))(0.0)


#: name -> a factory of (scalar function of one array, the point to evaluate it at). Factories,
#: so that importing the suite creates no arrays: asv's forkserver imports it once and forks a
#: process per benchmark, which is only safe while JAX's backend is not yet initialised.
MODELS = {
    "Polynomial": lambda: (cj.Polynomial.cake_quality(), 1.0),
    "LikeModel": lambda: (_like_loss, (0.3, -0.2, 0.1)),
    "Deliciousness": lambda: (cj.Deliciousness(), CAKE),
    "FluffinessLoss": lambda: (cj.FluffinessLoss(True), CAKE),
    "SweetnessError": lambda: (lambda x: cj.SweetnessError()(x, 9.5), CAKE),
    "VibrationScore": lambda: (_vibration, (2.0, 1.0)),
    "FlavorStability": lambda: (cj.FlavorStability(), 3.0),
    "YeastActivity": lambda: (lambda x: jnp.sum(cj.YeastActivity()(x)), (-1.0, 0.5, 2.0, 500.0)),
    "GradientClip": lambda: (_clipped, CAKE),
    "FixedPoint": lambda: (_fixed_point, (0.75, 10.0)),
}


def transformed(f, transform: str):
    """`f` under a transform, as a function of the point."""
    if transform == "forward":
        return lambda x: f(x)
    if transform == "hvp":
        return lambda x: cj.hvp(f, x, jnp.ones_like(x))
    return getattr(jax, transform)(f)


#: Which transform a model cannot support (forward mode through a custom_vjp).
UNSUPPORTED = {("GradientClip", "jacfwd")}


def like_problem(d: int, cakes: int = 256):
    """The like model scaled up: `cakes` cakes of `d` features; a scalar function of the
    weights."""
    kf, kw = jax.random.split(jax.random.key(0))
    features = jax.random.normal(kf, (cakes, d)) / jnp.sqrt(d)
    likes = jax.random.bernoulli(kw, 0.5, (cakes,))

    def loss(w):
        return cj.like_loss(cj.LikeModel(w, 0.0), features, likes)

    jax.block_until_ready(features)
    return loss, jax.block_until_ready(jax.random.normal(kw, (d,)))


class TanhCell(eqx.Module):
    """x ↦ tanh(W x + U θ): a contraction when ‖W‖₂ < 1 (tanh is 1-Lipschitz)."""

    W: jax.Array
    U: jax.Array
    theta: jax.Array

    def __call__(self, x):
        return jnp.tanh(self.W @ x + self.U @ self.theta)


def tanh_contraction(n: int, rho: float = 0.5):
    """(W, U, θ) of a `TanhCell` on n states and θ of dimension 4, with W = A + Aᵀ symmetric
    and scaled to spectral radius ‖W‖₂ = rho (the contraction's rate near x = 0)."""
    kw, ku, kt = jax.random.split(jax.random.key(0), 3)
    A = jax.random.normal(kw, (n, n))
    W = A + A.T
    W = rho * W / jnp.max(jnp.abs(jnp.linalg.eigvalsh(W)))
    U = jax.random.normal(ku, (n, 4)) / jnp.sqrt(n)
    return jax.block_until_ready((W, U, jax.random.normal(kt, (4,))))


__all__ = ["MODELS", "TanhCell", "UNSUPPORTED", "course", "like_problem", "tanh_contraction",
           "transformed"]
