"""Gradient clipping as a layer: the identity going forward, a clip of the cotangent going
backward."""

import functools as ft
import math
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float

from .._typing import TypedModule


def _clip(g: Array, mask: Array | None, bound: float, mode: str) -> Array:
    r"""The backward rule: clip the selected components of the cotangent $g$."""
    selected = g if mask is None else jnp.where(mask, g, 0)
    if mode == "value":
        clipped = jnp.clip(g, -bound, bound)
    else:
        # Scale by min(1, bound/‖g‖); the square root is taken only where it is positive, so
        # the rule stays differentiable (forward-over-reverse) at g = 0.
        squared = jnp.sum(selected**2)
        positive = squared > 0
        norm = jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1)), 0)
        too_long = norm > bound
        clipped = g * jnp.where(too_long, bound / jnp.where(too_long, norm, 1), 1)
    return clipped if mask is None else jnp.where(mask, clipped, g)


@ft.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def clip_gradient(x, mask, bound: float, mode: str):
    """The identity on `x`; its VJP clips the cotangent (see `GradientClip`)."""
    return x


def _clip_gradient_fwd(x, mask, bound, mode):
    return x, mask


def _clip_gradient_bwd(bound, mode, mask, g):
    return _clip(g, mask, bound, mode), None


clip_gradient.defvjp(_clip_gradient_fwd, _clip_gradient_bwd)


def _apply(
    x: Float[ArrayLike, "*shape"], mask: Bool[Array, "*shape"] | None, bound: float, mode: str
) -> Float[Array, "*shape"]:
    return clip_gradient(jnp.asarray(x), mask, bound, mode)


class GradientClip(TypedModule):
    r"""A layer that leaves values alone and clips gradients: $y = x$ going forward; going
    backward the cotangent $\bar y$ becomes

    - `mode="value"`: $\operatorname{clip}(\bar y_i, -b, b)$ for each selected component,
    - `mode="norm"`: $\bar y \cdot \min(1, b / \lVert \bar y_S \rVert_2)$ on the selected
      components $S$ (a per-layer gradient-norm clip),

    and unselected components pass through. Put it in front of any part of a model to bound
    the gradient flowing into its input. `GradientClip(0.1, mask=[True, False, False, False])`
    in front of `Deliciousness` gives the course's clipped gradient.

    Supports jit, grad (and `eqx.filter_grad` of a model containing it), vmap (each example's
    cotangent is clipped on its own: per-example clipping), jacrev and hessian
    (forward-over-reverse). Forward mode (`jvp`, `jacfwd`) cannot be supported: clipping a
    cotangent is not the transpose of any tangent map, so there is no forward rule to give,
    and JAX raises `TypeError: can't apply forward-mode autodiff (jvp) to a custom_vjp
    function`.

    **Fields:**

    - `bound`: $b$, positive and finite (static).
    - `mask`: which components to clip: a boolean array of the input's shape, or `None` for
      all of them.
    - `mode`: `"value"` (default) or `"norm"` (static).
    """

    bound: float = eqx.field(static=True, converter=float)
    mask: Bool[Array, "..."] | None = eqx.field(
        default=None, converter=lambda m: None if m is None else jnp.asarray(m)
    )
    mode: Literal["value", "norm"] = eqx.field(default="value", static=True)

    def __check_init__(self):
        if not (math.isfinite(self.bound) and self.bound > 0):
            raise ValueError(f"GradientClip: bound must be positive and finite, got {self.bound}.")

    def __call__(self, x: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
        """**Arguments:** `x`, the shape of `mask` if one was given. **Returns:** `x`."""
        return _apply(x, self.mask, self.bound, self.mode)
