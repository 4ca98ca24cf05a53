r"""The straight-through estimator as a layer: any function going forward, the identity's
derivative going backward."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._typing import as_float, describe, PyInt, TypedModule


def _forward(fn, x):
    y = fn(x)
    if not (hasattr(y, "shape") and hasattr(y, "dtype")) or (
        jnp.shape(y) != x.shape or jnp.result_type(y) != x.dtype
    ):
        raise TypeError(
            f"StraightThrough: fn must return an array of its input's shape and dtype (its "
            f"derivative is taken to be the identity's), got {describe(y)} for an input of "
            f"{describe(x)}."
        )
    return y


@eqx.filter_custom_jvp
def straight_through(fn, x):
    r"""$y = f(x)$ exactly (the same operations, so bitwise `fn(x)`), with the derivative
    rule $\dot y = \dot x + \partial_\theta f(x)\,\dot\theta$: the identity in $x$, and `fn`'s
    own derivative with respect to its parameters $\theta$ (its inexact array leaves, when
    `fn` is an Equinox module), which are then learnable as usual.

    The rule calls `straight_through` again for the value, so higher derivatives in $x$ are
    those of the identity (zero beyond the first). Mixed second derivatives in $x$ and
    $\theta$ come from `fn`'s own derivative.

    (JAX's documentation once wrote this as `x + stop_gradient(f(x) - x)`, whose value is not
    `f(x)` in floating point: jax#9032. This one is.)
    """
    return _forward(fn, x)


@straight_through.def_jvp
def _straight_through_jvp(primals, tangents):
    fn, x = primals
    fn_dot, x_dot = tangents
    y = straight_through(fn, x)
    y_dot = jnp.zeros_like(y) if x_dot is None else x_dot
    if any(leaf is not None for leaf in jax.tree_util.tree_leaves(fn_dot)):
        _, from_fn = eqx.filter_jvp(lambda g: g(x), (fn,), (fn_dot,))
        y_dot = y_dot + from_fn
    return y, y_dot


class StraightThrough(TypedModule):
    r"""The straight-through estimator: the value of `fn` going forward, the derivative of the
    identity going backward. `StraightThrough(jnp.round)` quantises activations while
    gradients flow as if it did not; `StraightThrough(jnp.sign)` gives binary units.

    The forward value is exactly `fn(x)` (bitwise). Supports every transform (jit, vmap,
    grad, jvp, jacfwd, jacrev, hessian); derivatives with respect to `fn`'s own parameters
    (when it is an Equinox module) are `fn`'s. `fn` must return its input's shape and dtype:
    anything else is a `TypeError` naming what it returned.

    **Fields:**

    - `fn`: the forward function, a callable (a function or an Equinox module).
    """

    fn: Callable

    def __call__(self, x: Float[ArrayLike, "*shape"] | PyInt) -> Float[Array, "*shape"]:
        """**Arguments:** `x`, any shape. **Returns:** `fn(x)`."""
        self.check_fields()
        return straight_through(self.fn, as_float(x))
