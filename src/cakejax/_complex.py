r"""Differentiating complex functions correctly: the realified map, its Jacobian, Wirtinger
derivatives, the Cauchy–Riemann test, the ascent direction of a real score of a complex
variable, and a holomorphic derivative that refuses non-holomorphic functions.

Notation: $z = x + iy$, $f = u + iv$. The Wirtinger derivatives are
$\partial f/\partial z = \tfrac12(\partial_x f - i\,\partial_y f)$ and
$\partial f/\partial \bar z = \tfrac12(\partial_x f + i\,\partial_y f)$; $f$ is holomorphic at
$z$ exactly when $\partial f/\partial \bar z = 0$ there (the Cauchy–Riemann equations
$u_x = v_y$, $u_y = -v_x$), and then $f'(z) = \partial f/\partial z$.
"""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Complex, Float, Inexact

from ._arguments import tolerance


def _complex_array(z) -> Array:
    """`z` as a complex array: real arrays get a zero imaginary part of their own precision."""
    z = jnp.asarray(z)
    if jnp.iscomplexobj(z):
        return z
    return jax.lax.complex(z, jnp.zeros_like(z))


def realify(f: Callable[..., Any]) -> Callable[..., Any]:
    r"""The function $f: \mathbb{C}^n \to \mathbb{C}^m$ seen as a map
    $\mathbb{R}^{2n} \to \mathbb{R}^{2m}$.

    The returned function takes a real array (JAX or NumPy) of shape `(*z.shape, 2)` holding
    $(x, y) = (\operatorname{Re} z, \operatorname{Im} z)$ in its last axis and returns
    `(*f(z).shape, 2)` holding $(u, v)$. A real-valued $f$ keeps its output as it is (there is
    no imaginary part to add). A scalar $f$ becomes $\mathbb{R}^2 \to \mathbb{R}^2$.
    """

    def real_f(xy: Float[ArrayLike, "*shape 2"]) -> Float[Array, "..."]:
        xy = jnp.asarray(xy)
        out = f(jax.lax.complex(xy[..., 0], xy[..., 1]))
        if jnp.iscomplexobj(out):
            return jnp.stack([jnp.real(out), jnp.imag(out)], axis=-1)
        return out

    return real_f


def _as_real_pairs(z: Complex[Array, "*shape"]) -> Float[Array, "*shape 2"]:
    return jnp.stack([jnp.real(z), jnp.imag(z)], axis=-1)


def complex_jacobian(
    f: Callable[..., Any], z: Complex[ArrayLike, "*shape"]
) -> Float[Array, "rows cols"]:
    r"""The real Jacobian of `realify(f)` at $z$: for scalar $f$ the 2×2 matrix
    $\begin{pmatrix} u_x & u_y \\ v_x & v_y \end{pmatrix}$; for $f: \mathbb{C}^n \to
    \mathbb{C}^m$ the $2m \times 2n$ matrix made of such blocks (rows and columns interleave
    real and imaginary parts). A real-valued $f$ gives $m \times 2n$.

    For $\bar z$ it is $\begin{pmatrix} 1 & 0 \\ 0 & -1 \end{pmatrix}$ everywhere: the full
    picture that `jax.grad(..., holomorphic=True)` (which returns $1$) hides.
    """
    z = _complex_array(z)
    jac = jax.jacfwd(realify(f))(_as_real_pairs(z))
    cols = 2 * z.size
    return jac.reshape(-1, cols)


def _partials(f: Callable[..., Any], z: Array) -> tuple[Array, Array]:
    """$\\partial_x f$ and $\\partial_y f$, each of shape `(*f(z).shape, *z.shape)`."""
    x, y = jnp.real(z), jnp.imag(z)
    f_x = jax.jacfwd(lambda x_: f(jax.lax.complex(x_, y)))(x)
    f_y = jax.jacfwd(lambda y_: f(jax.lax.complex(x, y_)))(y)
    return f_x, f_y


def wirtinger(
    f: Callable[..., Any], z: Complex[ArrayLike, "*shape"]
) -> tuple[Complex[Array, "..."], Complex[Array, "..."]]:
    r"""The Wirtinger derivatives $(\partial f/\partial z,\ \partial f/\partial \bar z)$ at $z$.

    $\partial f/\partial z = \tfrac12(\partial_x f - i\,\partial_y f)$,
    $\partial f/\partial \bar z = \tfrac12(\partial_x f + i\,\partial_y f)$, from two
    forward-mode derivatives. For $z^2 + z$ at $2 + i$: $(5 + 2i, 0)$; for $\bar z$: $(0, 1)$.
    For a real-valued $f$, $\partial f/\partial \bar z = \overline{\partial f/\partial z}$.
    For array $f$ and $z$ each has shape `(*f(z).shape, *z.shape)`.
    """
    f_x, f_y = _partials(f, _complex_array(z))
    f_x = _complex_array(f_x)
    f_y = _complex_array(f_y)
    return 0.5 * (f_x - 1j * f_y), 0.5 * (f_x + 1j * f_y)


def _cauchy_riemann_holds(
    owner: str, d_z: Inexact[Array, "..."], d_zbar: Inexact[Array, "..."], rtol, atol
) -> Bool[Array, ""]:
    """Whether the Cauchy–Riemann test passes; an error (`eqx.error_if`) where a derivative is
    not finite, where no answer would be true (a NaN fails every comparison)."""
    rtol = tolerance(owner, "rtol", rtol)
    atol = tolerance(owner, "atol", atol)
    finite = jnp.isfinite(d_z).all() & jnp.isfinite(d_zbar).all()
    holds = eqx.error_if(
        jnp.all(jnp.abs(d_zbar) <= atol + rtol * jnp.abs(d_z)),
        ~finite,
        f"{owner}: f's derivatives at z are not finite (z, or f near z, is NaN or infinite), "
        "so whether f is holomorphic there cannot be decided; give a finite z at which f and "
        "its derivatives are finite",
    )
    return holds


def is_holomorphic(
    f: Callable[..., Any],
    z: Complex[ArrayLike, "*shape"],
    *,
    rtol: float | int = 1e-5,
    atol: float | int = 1e-7,
) -> Bool[Array, ""]:
    r"""Whether $f$ satisfies the Cauchy–Riemann equations at $z$ (at every point of an array
    $z$): $|\partial f/\partial \bar z| \le \text{atol} + \text{rtol}\,|\partial f/\partial z|$
    elementwise. The derivatives are exact (automatic differentiation), so the tolerances only
    absorb rounding. Returns a boolean scalar array (usable under `jax.jit`).

    True for $z^2 + z$, $\sin$, $\exp$; False for $\bar z$, $\operatorname{Re} z$, $|z|^2$
    (away from $0$).
    """
    d_z, d_zbar = wirtinger(f, z)
    return _cauchy_riemann_holds("is_holomorphic", d_z, d_zbar, rtol, atol)


def ascent_direction(
    f: Callable[..., Any], z: Complex[ArrayLike, "*shape"]
) -> Complex[Array, "*shape"]:
    r"""For a real score $f: \mathbb{C} \to \mathbb{R}$, the complex number in whose direction
    $f$ increases fastest: $\partial_x f + i\,\partial_y f = 2\,\partial f/\partial \bar z$.

    `jax.grad(f)(z)` returns the **conjugate** of this, $\partial_x f - i\,\partial_y f$ (JAX's
    convention: the cotangent that pulls back through the real-linear map). For
    `VibrationScore()` at $2 + i$, `jax.grad` gives $-1 + 2i$, and moving $z$ along it *lowers*
    the score; the ascent direction is $-1 - 2i$. (The course's comment claims that
    `jax.grad`'s result is the ascent direction; it is not.)
    """
    z = _complex_array(z)
    out = jax.eval_shape(f, z)
    if not (out.shape == () and jnp.issubdtype(out.dtype, jnp.floating)):
        raise TypeError(
            f"ascent_direction: f must return a real scalar (a score to increase), got "
            f"{out.dtype}{list(out.shape)}. For a holomorphic f use cakejax.holomorphic_grad; "
            f"for any complex f, cakejax.wirtinger."
        )
    return jnp.conj(jax.grad(f)(z))


def holomorphic_grad(
    f: Callable[..., Any], *, rtol: float | int = 1e-5, atol: float | int = 1e-7
) -> Callable[..., Any]:
    r"""The complex derivative $f'(z) = \partial f/\partial z$ of a holomorphic $f$, which
    refuses to answer where $f$ is not holomorphic.

    `jax.grad(f, holomorphic=True)` silently returns the derivative of $\operatorname{Re} f$
    pulled back (for $\bar z$ it says $1$); this checks the Cauchy–Riemann equations at $z$
    (as `is_holomorphic`, same tolerances) and raises `equinox.EquinoxRuntimeError` where they
    fail, eagerly and under `jax.jit` (through `eqx.error_if`). Where they hold it returns the
    same number as `jax.grad(f, holomorphic=True)`.
    """

    rtol = tolerance("holomorphic_grad", "rtol", rtol)
    atol = tolerance("holomorphic_grad", "atol", atol)

    def grad_f(z: Complex[ArrayLike, "*shape"]) -> Complex[Array, "..."]:
        d_z, d_zbar = wirtinger(f, z)
        return eqx.error_if(
            d_z,
            ~_cauchy_riemann_holds("holomorphic_grad", d_z, d_zbar, rtol, atol),
            "holomorphic_grad: f is not holomorphic at z (df/dz̄ ≠ 0, the Cauchy–Riemann "
            "equations fail), so it has no complex derivative there; use "
            "cakejax.wirtinger or cakejax.complex_jacobian for the full derivative",
        )

    return grad_f
