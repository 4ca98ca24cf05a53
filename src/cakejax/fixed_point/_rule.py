r"""The forward solve as a `filter_custom_jvp` function and its implicit derivative rule."""

from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Int

from ._adjoint import AbstractAdjoint, nan_unless
from ._loop import floor_tolerance, iterate
from ._report import report_failures
from ._results import converged, FixedPointResult, messages
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


def working(dtype) -> Any:
    """The dtype a solve's arithmetic runs in: the state's, or float32 for a half-precision
    state (bfloat16 and float16 have no LAPACK and no room for a convergence test)."""
    return jnp.dtype(jnp.float32) if jnp.finfo(dtype).bits < 32 else jnp.dtype(dtype)


def in_working(g, dtype):
    """`g`, a map of flat vectors of `dtype`, as a map of its working dtype."""
    work = working(dtype)
    if work == dtype:
        return g
    return lambda v: g(v.astype(dtype)).astype(work)


def working_rtol(rtol: float, dtype) -> float:
    """A half-precision map's products carry its rounding: no linear solve is more accurate
    than the dtype's floor."""
    return max(rtol, floor_tolerance(dtype)) if working(dtype) != jnp.dtype(dtype) else rtol


@eqx.filter_custom_jvp
def fixed_point(fn, x0, *, config: Config):
    """The forward solve. Returns (x*, residual, steps, result code)."""
    flat_x0, unravel = ravel_pytree(x0)
    dtype = flat_x0.dtype
    forward = iterate(
        config.solver,
        in_working(flat_map(fn, unravel), dtype),
        flat_x0.astype(working(dtype)),
        config.rtol,
        config.atol,
        config.max_steps,
        precision=dtype,
    )
    x = forward.value.astype(dtype)
    code = result_code(forward.result)
    if config.throw:
        # The map with its arrays as explicit arguments, for the failure report's batching
        # rule (which of them vary over a vmapped batch).
        params, static = eqx.partition(fn, eqx.is_array)
        leaves, treedef = jax.tree_util.tree_flatten(params)

        def g(v, *leaves):
            f = eqx.combine(jax.tree_util.tree_unflatten(treedef, leaves), static)
            return in_working(flat_map(f, unravel), dtype)(v)

        failed = report_failures(~converged(forward.result), code, forward.value, g, tuple(leaves))
        x = eqx.branched_error_if(x, failed, code, messages(config.solver.advice))
    return unravel(x), forward.residual.astype(dtype), forward.steps, code


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

    dtype, work = flat_x.dtype, working(flat_x.dtype)
    _, rhs = eqx.filter_jvp(lambda f: flat_map(f, unravel)(flat_x), (fn,), (fn_dot,))
    _, jvp = jax.linearize(flat_map(fn, unravel), flat_x)
    jvp = in_working(jvp, dtype)
    options: dict[str, Any] = {
        "rtol": working_rtol(config.rtol, dtype),
        "max_steps": config.max_steps,
    }
    # With the primal computation (the forward pass of reverse mode), independent of the
    # right-hand side: does the derivative exist here at all?
    certified, prepared = config.adjoint.prepare(jvp, flat_x.astype(work), **options)
    result = result_from_code(code)
    result = FixedPointResult.where(
        converged(result) & ~certified, FixedPointResult.singular, result
    )
    if config.throw:
        flat_x = FixedPointResult.singular.error_if(flat_x, ~certified)
    t = config.adjoint.tangent(
        prepared, jvp, rhs.astype(work), throw=config.throw, **options
    ).astype(dtype)
    if not config.throw:
        t = t * nan_unless(converged(result), t.dtype)
    primal_out = (unravel(flat_x), residual, steps, result_code(result))
    return primal_out, (unravel(t), jnp.zeros_like(residual), None, None)
