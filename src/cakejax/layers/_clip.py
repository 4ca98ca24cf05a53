"""Gradient clipping as a layer: the identity going forward, a clip of the cotangent going
backward."""

import functools as ft
import math
from typing import Literal

import equinox as eqx
import jax
import jax.core  # for jax.core.Tracer (named, so that type checkers see it)
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, TypeCheckError

from .._typing import as_float, describe, PyInt, static_float, TypedModule


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
    x: Float[ArrayLike, "*shape"] | PyInt,
    mask: Bool[Array, "*shape"] | None,
    bound: float,
    mode: str,
) -> Float[Array, "*shape"]:
    return clip_gradient(as_float(x), mask, bound, mode)


class Mask:
    """A constant boolean mask, held by `GradientClip` as a static field: a hyperparameter
    like the bound, not a leaf of the model's PyTree. As a leaf it would be an array that no
    gradient reaches, which breaks the Equinox training loop
    (`tx.update(grads, opt_state, eqx.filter(model, eqx.is_array))` sees `None` in `grads`
    where the parameters hold the mask). Hashed once, by its bytes, so that a large mask costs
    nothing at each `jax.jit` cache lookup. `np.asarray(mask)` gives the array back."""

    __slots__ = ("array", "_hash")

    def __init__(self, array: np.ndarray):
        self.array = np.array(array, dtype=bool)
        self.array.flags.writeable = False
        self._hash = hash((self.array.shape, self.array.tobytes()))

    def __array__(self, dtype=None, copy=None):
        return self.array if dtype is None else self.array.astype(dtype)

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        return (
            isinstance(other, Mask)
            and self._hash == other._hash
            and self.array.shape == other.array.shape
            and np.array_equal(self.array, other.array)
        )

    def __repr__(self):
        return f"Mask({self.array.tolist()})"


def _to_mask(value) -> Mask | None:
    if value is None or isinstance(value, Mask):
        return value
    if isinstance(value, jax.core.Tracer):
        raise TypeError(
            "GradientClip: field 'mask' is a static hyperparameter and must be a concrete "
            f"boolean array, got a traced value ({describe(value)}). Build the GradientClip "
            "outside the transformation."
        )
    try:
        array = np.asarray(value)
    except ValueError:  # a ragged list
        array = None
    if array is None or array.dtype != bool:
        raise TypeCheckError(
            f"GradientClip: field 'mask' must be a boolean array (or None), got "
            f"{describe(value if array is None else array)}."
        )
    return Mask(array)


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
      all of them (static, held as a `Mask`: the model's only PyTree leaves are learnable
      arrays, so it trains in the Equinox loop with `eqx.is_array` or
      `eqx.is_inexact_array`).
    - `mode`: `"value"` (default) or `"norm"` (static).

    **Under a batch mean.** The clip acts on the cotangent that reaches it. Inside
    `jax.grad(lambda m: jnp.mean(jax.vmap(m)(X)))` that is each example's cotangent already
    divided by the batch size $B$, so the effective bound on an example's own gradient is
    $bB$ and grows with the batch. `jax.vmap(jax.grad(per_example_loss))` clips each
    example's own gradient at $b$ (average afterwards). To clip each example's gradient with
    respect to the *parameters* (the DP-SGD form), use `cakejax.clipped_mean_grad`.
    """

    bound: float = eqx.field(static=True, converter=static_float("GradientClip", "bound"))
    mask: Mask | None = eqx.field(default=None, static=True, converter=_to_mask)
    mode: Literal["value", "norm"] = eqx.field(default="value", static=True)

    def _check_values(self):
        if not (math.isfinite(self.bound) and self.bound > 0):
            raise ValueError(
                f"GradientClip: field 'bound' must be positive and finite, got {self.bound}."
            )

    def __call__(self, x: Float[ArrayLike, "*shape"] | PyInt) -> Float[Array, "*shape"]:
        """**Arguments:** `x`, the shape of `mask` if one was given. **Returns:** `x`."""
        self.check_fields()
        mask = None
        if self.mask is not None:
            if self.mask.array.shape != jnp.shape(x):
                raise TypeCheckError(
                    f"GradientClip: field 'mask' has shape {self.mask.array.shape}, the input "
                    f"x {jnp.shape(x)}: they must be equal (use jax.vmap for a batch)."
                )
            mask = jnp.asarray(self.mask.array)
        return _apply(x, mask, self.bound, self.mode)
