"""Part 3 of the course, "Exotic Flavors": complex-valued cake models."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Complex, Float

from .._checks import checked
from .._typing import as_float, as_float_array, Scalar, ScalarLike, TypedModule


def _finite_z(model: str, z) -> Array:
    z = jnp.asarray(z)
    return checked(z, ~jnp.isfinite(z), f"{model}: argument 'z' must be finite, got NaN or inf")


class VibrationScore(TypedModule):
    r"""A real score of a complex mixer vibration $z = x + iy$:
    $a\,\operatorname{Re} z - |z|^2 = a x - x^2 - y^2$ (the course's `score_from_vibration`,
    $a = 3$). Not holomorphic (it is real-valued): use `cakejax.ascent_direction` for the
    direction in which it increases, not `jax.grad`.

    **Fields:** `real_weight` $a$ (default 3), an array field.
    """

    real_weight: Scalar = eqx.field(default=3.0, converter=as_float_array)

    def __call__(self, z: Complex[ArrayLike, ""]) -> Float[Array, ""]:
        self.check_fields()
        z = _finite_z("VibrationScore", z)
        return self.real_weight * jnp.real(z) - jnp.real(z * jnp.conj(z))


class SmoothMagic(TypedModule):
    r"""The course's holomorphic spell $z^2 + z$: $f'(z) = 2z + 1$ (so $5 + 2i$ at $2 + i$)."""

    def __call__(self, z: Complex[ArrayLike, ""]) -> Complex[Array, ""]:
        z = _finite_z("SmoothMagic", z)
        return z**2 + z


class TrickyMagic(TypedModule):
    r"""The course's non-holomorphic spell $\bar z$: its realified Jacobian is
    $\begin{pmatrix} 1 & 0 \\ 0 & -1 \end{pmatrix}$ and it has no complex derivative."""

    def __call__(self, z: Complex[ArrayLike, ""]) -> Complex[Array, ""]:
        return jnp.conj(_finite_z("TrickyMagic", z))


class FlavorStability(TypedModule):
    r"""A real recipe with complex maths inside ($\mathbb{R} \to \mathbb{C} \to \mathbb{R}$):
    with $z = c + i\,x$, the score is $\operatorname{Re}(z\,\bar z) = c^2 + x^2$ (the course's
    `calculate_flavor_stability`, $c = 1$: 10 at $x = 3$, derivative $2x = 6$).

    **Fields:** `base` $c$ (default 1), an array field.
    """

    base: Scalar = eqx.field(default=1.0, converter=as_float_array)

    def __call__(self, x: ScalarLike) -> Scalar:
        self.check_fields()
        x = as_float(x)
        x = checked(
            x, ~jnp.isfinite(x), "FlavorStability: argument 'x' must be finite, got NaN or inf"
        )
        dtype = jnp.result_type(self.base, x)
        z = jax.lax.complex(self.base.astype(dtype), jnp.asarray(x, dtype))
        return jnp.real(z * jnp.conj(z))
