r"""The forward solve as a `filter_custom_jvp` function and its implicit derivative rule."""

from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Int

from ._adjoint import AbstractAdjoint, nan_unless
from ._loop import iterate
from ._results import converged, FixedPointResult
from ._solver import AbstractFixedPointSolver


class Config(NamedTuple):
    """FixedPoint's static settings, one hashable value (keyword arguments of
    `eqx.filter_custom_jvp` must hold no traced arrays)."""

    solver: AbstractFixedPointSolver
    adjoint: AbstractAdjoint
    rtol: float
    atol: float
    max_steps: int
    throw: bool


# A FixedPointResult is a PyTree with one integer leaf; custom_jvp functions return that leaf.
_RESULT_TREE = jax.tree_util.tree_structure(FixedPointResult.successful)


def result_code(result: FixedPointResult) -> Int[Array, ""]:
    return jnp.asarray(jax.tree_util.tree_leaves(result)[0])


def result_from_code(code: Int[Array, ""]) -> FixedPointResult:
    return jax.tree_util.tree_unflatten(_RESULT_TREE, [code])


def flat_map(fn, unravel):
    """`fn` as a map of flat vectors."""
    return lambda x: ravel_pytree(fn(unravel(x)))[0]


@eqx.filter_custom_jvp
def fixed_point(fn, x0, *, config: Config):
    """The forward solve. Returns (x*, residual, steps, result code)."""
    flat_x0, unravel = ravel_pytree(x0)
    forward = iterate(
        config.solver, flat_map(fn, unravel), flat_x0, config.rtol, config.atol, config.max_steps
    )
    x = forward.value
    if config.throw:
        x = forward.result.error_if(x, ~converged(forward.result))
    return unravel(x), forward.residual, forward.steps, result_code(forward.result)


@fixed_point.def_jvp
def _fixed_point_jvp(primals, tangents, *, config: Config):
    r"""Implicit function theorem: differentiating $x^\star = f_\theta(x^\star)$ gives
    $(I - \partial_x f)\,\dot x^\star = \partial_\theta f\,\dot\theta$, solved by the adjoint.
    The tangent $\dot x_0$ is ignored: $x^\star$ does not depend on where the solve started."""
    fn, x0 = primals
    fn_dot, _ = tangents
    x_star, residual, steps, code = fixed_point(fn, x0, config=config)
    flat_x, unravel = ravel_pytree(x_star)
    if fn_dot is None or not jax.tree_util.tree_leaves(fn_dot):
        zero = jax.tree_util.tree_map(jnp.zeros_like, x_star)
        return (x_star, residual, steps, code), (zero, jnp.zeros_like(residual), None, None)

    _, rhs = eqx.filter_jvp(lambda f: flat_map(f, unravel)(flat_x), (fn,), (fn_dot,))
    _, jvp = jax.linearize(flat_map(fn, unravel), flat_x)
    options: dict[str, Any] = {"rtol": config.rtol, "max_steps": config.max_steps}
    # With the primal computation (the forward pass of reverse mode), independent of the
    # right-hand side: does the derivative exist here at all?
    certified, prepared = config.adjoint.prepare(jvp, flat_x, **options)
    result = result_from_code(code)
    result = FixedPointResult.where(
        converged(result) & ~certified, FixedPointResult.singular, result
    )
    if config.throw:
        flat_x = FixedPointResult.singular.error_if(flat_x, ~certified)
    t = config.adjoint.tangent(prepared, jvp, rhs, throw=config.throw, **options)
    if not config.throw:
        t = t * nan_unless(converged(result), t.dtype)
    primal_out = (unravel(flat_x), residual, steps, result_code(result))
    return primal_out, (unravel(t), jnp.zeros_like(residual), None, None)
