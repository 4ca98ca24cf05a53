"""The course's cake and like-model data the suites share, and the scaled-up problems where
size matters."""

import equinox as eqx
import jax
import jax.numpy as jnp

import cakejax as cj



CAKE = (1.0, 3.0, 2.0, 1.5)
FEATURES = ((0.8, 0.9, -0.5), (0.7, 0.8, -0.4), (0.3, 0.4, -0.8), (0.9, 0.7, -0.3))
LIKES = (True, True, False, True)


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


__all__ = ["CAKE", "FEATURES", "LIKES", "TanhCell", "like_problem", "tanh_contraction"]
