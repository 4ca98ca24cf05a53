r"""Implicit fixed points $x^\star = f_\theta(x^\star)$ as a layer, differentiated with the
implicit function theorem and never through the loop."""

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, Int, PyTree



class FixedPointResult(eqx.Enumeration):
    """What happened in a fixed-point solve (the `result` of `FixedPoint.solve`)."""

    successful = ""
    max_steps_reached = (
        "FixedPoint: no convergence within max_steps; the iteration is still converging, "
        "only slowly (fn contracts weakly). Raise max_steps, loosen rtol/atol, or make fn "
        "contract more strongly."
    )
    diverged = (
        "FixedPoint: the iteration does not converge: the step |x_{k+1} - x_k| grew or stopped "
        "shrinking, or became non-finite. fn is not a contraction near the iterates, so "
        "iterating it finds no fixed point from this x0."
    )
    oscillating = (
        "FixedPoint: the iteration oscillates (x_{k+1} = x_{k-1} != x_k): fn has no attracting "
        "fixed point here (e.g. a slope of -1), so iterating it finds none."
    )
    singular = (
        "FixedPoint: the implicit derivative needs a solve with I - dfn/dx at x*, and that "
        "system could not be solved: I - dfn/dx is singular (or fn is not a contraction at "
        "x*), so the derivative of the fixed point does not exist or is not unique."
    )


def _iterate(
    step: Callable[[Array], Array], x0: Array, rtol: float, atol: float, max_steps: int
) -> tuple[Array, Array, Array, Any]:
    r"""Iterates $x_{k+1} = \text{step}(x_k)$ from `x0` (flat vectors) until
    $|x_{k+1} - x_k| \le \text{atol} + \text{rtol}\,|x_{k+1}|$ elementwise.

    Stops early on a non-finite iterate (diverged) or on a two-cycle: $x_{k+1} \approx x_{k-1}$
    with a step that did not shrink (oscillating). Out of steps, it reports `diverged` if the step stopped shrinking and
    `max_steps_reached` if it was still shrinking.

    **Returns:** the last iterate, the number of steps, the last step's size
    $\max|x_{k+1} - x_k|$ and a `FixedPointResult`.
    """

    def close(a, b):
        return jnp.all(jnp.abs(a - b) <= atol + rtol * jnp.abs(a)) & jnp.all(jnp.isfinite(a))

    def cond(carry):
        k, x_prev, x, _, _, cycle = carry
        stuck = close(x, x_prev) | ~jnp.all(jnp.isfinite(x)) | cycle
        return (k < max_steps) & ~stuck

    def body(carry):
        k, x_prev, x, _, size, _ = carry
        x_next = step(x)
        next_size = jnp.max(jnp.abs(x_next - x), initial=0)
        # Back where it was two steps ago without the step shrinking: a two-cycle. (A
        # converging oscillation, slope in (-1, 0), also nearly returns, but its steps shrink.)
        cycle = close(x_next, x_prev) & ~close(x_next, x) & (next_size >= size)
        return k + 1, x, x_next, size, next_size, cycle

    x1 = step(x0)
    size = jnp.max(jnp.abs(x1 - x0), initial=0)
    inf = jnp.asarray(jnp.inf, size.dtype)
    init = (jnp.asarray(1), x0, x1, inf, size, jnp.asarray(False))
    steps, x_prev, x, prev_size, size, cycle = jax.lax.while_loop(cond, body, init)

    result = FixedPointResult.where(
        close(x, x_prev),
        FixedPointResult.successful,
        FixedPointResult.where(
            cycle,
            FixedPointResult.oscillating,
            FixedPointResult.where(
                jnp.all(jnp.isfinite(x)) & (size < prev_size),
                FixedPointResult.max_steps_reached,
                FixedPointResult.diverged,
            ),
        ),
    )
    return x, steps, size, result


class FixedPointSolution(eqx.Module):
    """The outcome of `FixedPoint.solve`.

    **Fields:**

    - `value`: the fixed point $x^\\star$ (the last iterate if the solve failed).
    - `steps`: the number of applications of `fn`.
    - `residual`: the size of the last step, $\\max |x_{k+1} - x_k|$.
    - `result`: a `FixedPointResult`: `successful`, `max_steps_reached`, `diverged` or
      `oscillating`.
    """

    value: PyTree[Float[Array, "..."]]
    steps: Int[Array, ""]
    residual: Float[Array, ""]
    result: FixedPointResult


# A FixedPointResult is a PyTree with one integer leaf; custom_jvp functions return that leaf.
_RESULT_TREE = jax.tree_util.tree_structure(FixedPointResult.successful)


def _result_code(result: FixedPointResult) -> Int[Array, ""]:
    return jnp.asarray(jax.tree_util.tree_leaves(result)[0])


def _result_from_code(code: Int[Array, ""]) -> FixedPointResult:
    return jax.tree_util.tree_unflatten(_RESULT_TREE, [code])


def _nan_unless(ok: Array, dtype) -> Array:
    """1 where `ok`, NaN elsewhere: multiplying a tangent by it keeps it linear."""
    return jnp.where(ok, jnp.asarray(1, dtype), jnp.asarray(jnp.nan, dtype))


class _Options(NamedTuple):
    """FixedPoint's static settings, passed to the custom-JVP function as one hashable value
    (keyword arguments of `eqx.filter_custom_jvp` must hold no traced arrays)."""

    rtol: float
    atol: float
    max_steps: int
    throw: bool

    @property
    def tolerances(self) -> tuple[float, float, int]:
        return self.rtol, self.atol, self.max_steps


def _richardson(options: _Options):
    r"""A matrix-free solver for $(I - J)\,t = c$ with $\rho(J) < 1$: the fixed-point iteration
    $t \leftarrow t + (c - (I - J)t) = c + J t$, one product with $J$ (or $J^\top$) a step,
    i.e. the same contraction that found $x^\star$. Failure means $I - J$ is singular or $J$
    does not contract: raised (`throw=True`) or turned into NaN."""

    def solve(matvec, c):
        t, _, _, result = _iterate(lambda t: t + (c - matvec(t)), c, *options.tolerances)
        failed = result != FixedPointResult.successful
        if options.throw:
            return FixedPointResult.singular.error_if(t, failed)
        return t * _nan_unless(~failed, t.dtype)

    return solve


@eqx.filter_custom_jvp
def _fixed_point(fn, x0, *, options):
    """The forward solve. Returns (x*, steps, residual, result code)."""
    flat_x0, unravel = ravel_pytree(x0)

    def step(x):
        return ravel_pytree(fn(unravel(x)))[0]

    x, steps, residual, result = _iterate(step, flat_x0, *options.tolerances)
    if options.throw:
        x = result.error_if(x, result != FixedPointResult.successful)
    return unravel(x), steps, residual, _result_code(result)


@_fixed_point.def_jvp
def _fixed_point_jvp(primals, tangents, *, options):
    r"""Implicit function theorem: differentiating $x^\star = f_\theta(x^\star)$ gives
    $(I - \partial_x f)\,\dot x^\star = \partial_\theta f\,\dot\theta$. The tangent $\dot x_0$
    is ignored: $x^\star$ does not depend on where the iteration started."""
    fn, x0 = primals
    fn_dot, _ = tangents
    x_star, steps, residual, result = _fixed_point(fn, x0, options=options)
    flat_x, unravel = ravel_pytree(x_star)

    def f_flat(f, x):
        return ravel_pytree(f(unravel(x)))[0]

    # Right-hand side ∂θ f · θ̇ (zero if no parameter is differentiated).
    if fn_dot is None or not jax.tree_util.tree_leaves(fn_dot):
        rhs = jnp.zeros_like(flat_x)
    else:
        _, rhs = eqx.filter_jvp(lambda f: f_flat(f, flat_x), (fn,), (fn_dot,))
    # J = ∂x f at x*, linearised once; the solve is transposable (reverse mode) through
    # custom_linear_solve, whose transpose solves with Jᵀ using the same iteration.
    _, jac = jax.linearize(lambda x: f_flat(fn, x), flat_x)
    solve = _richardson(options)
    t = jax.lax.custom_linear_solve(lambda t: t - jac(t), rhs, solve, solve)
    if not options.throw:
        t = t * _nan_unless(result == _result_code(FixedPointResult.successful), t.dtype)
    tangent_out = (unravel(t), None, jnp.zeros_like(residual), None)
    return (x_star, steps, residual, result), tangent_out


class FixedPoint(eqx.Module):
    r"""The fixed point $x^\star = f_\theta(x^\star)$ of an Equinox module $f_\theta$ (`fn`),
    found by iterating $x_{k+1} = f_\theta(x_k)$ from $x_0$, as a layer.

    **Derivatives** come from the implicit function theorem, never from the loop:
    $\dot x^\star = (I - \partial_x f)^{-1}\,\partial_\theta f\,\dot\theta$, a forward
    (`jax.custom_jvp`) rule, so every transform works: jit, vmap, grad and `eqx.filter_grad`
    with respect to `fn`'s fields, jvp, jacfwd, jacrev, hessian. The linear system is solved
    matrix-free, one Jacobian-vector product of `fn` a step (for reverse mode, one
    vector-Jacobian product), by the same contraction that found $x^\star$: no $n \times n$
    Jacobian is ever formed. The derivative with respect to $x_0$ is exactly zero.

    **Never silently wrong.** Running out of steps, diverging, oscillating, or a singular
    $I - \partial_x f$ (in a derivative) raise an error by default (`eqx.error_if`, eagerly
    and under jit). With `throw=False` nothing is raised: `solve` reports the `result`, and
    derivatives of failed solves (each element, under vmap) are NaN.

    **Fields:**

    - `fn`: an Equinox module mapping a state to a state of the same structure (a scalar, an
      array or a PyTree of floating arrays); its array fields are $\theta$.
    - `rtol`, `atol`: converged when $|x_{k+1} - x_k| \le \text{atol} + \text{rtol}\,
      |x_{k+1}|$ elementwise (defaults `1e-6`; tighten both in float64).
    - `max_steps`: the most applications of `fn` (default 256); the derivative's linear
      solve uses the same budget.
    - `throw`: raise on failure (default) or report it.
    """

    fn: Callable[..., Any]
    rtol: float = eqx.field(default=1e-6, static=True, converter=float)
    atol: float = eqx.field(default=1e-6, static=True, converter=float)
    max_steps: int = eqx.field(default=256, static=True)
    throw: bool = eqx.field(default=True, static=True)

    def __check_init__(self):
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"FixedPoint: {name} must be finite and >= 0, got {value}.")
        if self.rtol == 0 and self.atol == 0:
            raise ValueError("FixedPoint: rtol and atol cannot both be 0.")
        if isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int) or (
            self.max_steps < 1
        ):
            raise ValueError(f"FixedPoint: max_steps must be an int >= 1, got {self.max_steps!r}.")
        if not callable(self.fn):
            raise TypeError(f"FixedPoint: fn must be callable, got {type(self.fn).__name__}.")

    def _options(self) -> _Options:
        return _Options(self.rtol, self.atol, self.max_steps, self.throw)

    def _check_state(self, x0) -> None:
        leaves = jax.tree_util.tree_leaves(x0)
        if not leaves or not all(jnp.issubdtype(jnp.result_type(a), jnp.floating)
                                 for a in leaves):
            raise TypeError(
                "FixedPoint: the state x0 must be a floating array or a PyTree of them, got "
                f"{jax.tree_util.tree_map(lambda a: jnp.result_type(a).name, x0)}."
            )
        def describe(tree):
            return jax.tree_util.tree_map(lambda a: f"{a.dtype.name}{list(a.shape)}", tree)

        shape_in = describe(jax.eval_shape(lambda x: x, x0))
        shape_out = describe(eqx.filter_eval_shape(self.fn, x0))
        if shape_in != shape_out:
            raise TypeError(
                "FixedPoint: fn must map the state to a state of the same structure, shapes "
                f"and dtypes; x0 is {shape_in} but fn(x0) is {shape_out}."
            )

    def solve(self, x0: PyTree[Float[Array, "..."]] | float) -> FixedPointSolution:
        """Iterates `fn` from `x0`; returns a `FixedPointSolution` (value, steps, residual,
        result)."""
        x0 = jax.tree_util.tree_map(jnp.asarray, x0)
        self._check_state(x0)
        value, steps, residual, result = _fixed_point(self.fn, x0, options=self._options())
        return FixedPointSolution(value, steps, residual, _result_from_code(result))

    def __call__(self, x0: PyTree[Float[Array, "..."]] | float) -> PyTree[Float[Array, "..."]]:
        """**Arguments:** `x0`, the initial state. **Returns:** the fixed point $x^\\star$."""
        return self.solve(x0).value
