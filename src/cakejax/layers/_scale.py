r"""Gradient scaling as a layer: the identity going forward, the derivative times a constant."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Inexact

from .._typing import as_float, describe, PyInt, static_float, TypedModule


def scale_gradient(
    x: Inexact[ArrayLike, "*shape"], scale: Float[ArrayLike, ""]
) -> Inexact[Array, "*shape"]:
    r"""$y = x$, with the derivative rule $\dot y = s\,\dot x$ (`jax.custom_jvp`).

    The tangent map $\dot x \mapsto s\,\dot x$ is linear, so JAX transposes it for reverse
    mode: the cotangent becomes $s\,\bar y$. Every transform works, forward and reverse. The
    derivative with respect to $s$ is zero, which is exact: $y$ does not depend on $s$. `scale`
    may be a traced array (a schedule, e.g. the ramp of domain-adversarial training), so
    changing it does not recompile.

    Higher derivatives compose: a second derivative through the layer is scaled by $s^2$
    (both the inner and the outer derivative pass through it), so under
    `GradientReversal` a Hessian is not reversed.
    """
    real = (isinstance(scale, int | float) and not isinstance(scale, bool)) or (
        hasattr(scale, "dtype")
        and jnp.shape(scale) == ()
        and jnp.issubdtype(jnp.result_type(scale), jnp.floating)
    )
    if not real:
        raise TypeError(
            f"scale_gradient: scale must be a real scalar (a number or a 0-d float array, "
            f"traced or not), got {describe(scale)}."
        )
    return _scale_gradient(x, scale)


@jax.custom_jvp
def _scale_gradient(x, scale):
    return jnp.asarray(x)


@_scale_gradient.defjvp
def _scale_gradient_jvp(primals, tangents):
    x, scale = primals
    x_dot, _ = tangents
    x = jnp.asarray(x)
    return _scale_gradient(x, scale), jnp.asarray(scale, x_dot.real.dtype).astype(
        x_dot.dtype
    ) * x_dot


class GradientScale(TypedModule):
    r"""A layer that leaves values alone and multiplies derivatives by `scale`: $y = x$,
    $\dot y = s\,\dot x$ going forward, $\bar x = s\,\bar y$ going backward. Slows (or
    speeds) the training of everything before it by $s$ without touching what comes after,
    e.g. a shared backbone that should learn slower than its heads.

    Supports every transform (jit, vmap, grad, jvp, jacfwd, jacrev, hessian), real and
    complex inputs. Second derivatives through it are scaled by $s^2$.

    **Fields:**

    - `scale`: $s$, a finite real number (static: a hyperparameter, not a learnable leaf).
      To change it during training without recompiling, call
      `cakejax.scale_gradient(x, scale)` with a traced `scale` instead.
    """

    scale: float = eqx.field(static=True, converter=static_float("GradientScale", "scale"))

    def _check_values(self):
        if not abs(self.scale) < float("inf"):
            raise ValueError(f"GradientScale: field 'scale' must be finite, got {self.scale}.")

    def __call__(self, x: Inexact[ArrayLike, "*shape"] | PyInt) -> Inexact[Array, "*shape"]:
        """**Arguments:** `x`, any shape. **Returns:** `x`."""
        return scale_gradient(as_float(x), self.scale)
