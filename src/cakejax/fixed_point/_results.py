"""What a fixed-point solve can end in: one enumeration, shared by the solvers, the derivative
rule and the layer."""

from collections.abc import Callable

import equinox as eqx
import jax


class FixedPointResult(eqx.Enumeration):
    """The outcome of a `FixedPoint` solve (`FixedPointSolution.result`).

    Two outcomes are converged and never raise: `successful` (the estimated distance to the
    fixed point is within `rtol`/`atol`) and `floating_point_floor` (the iterates stopped
    improving at a residual that rounding error cannot reduce further: the tolerance asked for
    more than the floating-point type can give). The others raise with `throw=True`.
    """

    successful = ""
    floating_point_floor = (
        "FixedPoint: the residual |fn(x) - x| stopped shrinking at the floating-point floor "
        "before the tolerance was met; x is as accurate as this dtype allows."
    )
    max_steps_reached = (
        "FixedPoint: no convergence within max_steps, though the iteration was still making "
        "progress (fn contracts weakly here). Raise max_steps or loosen rtol/atol."
    )
    diverged = (
        "FixedPoint: the iteration does not converge: the residual |fn(x) - x| stopped "
        "shrinking far from the floating-point floor, or became non-finite. fn has no fixed "
        "point that this solver reaches from x0 (or the iterates cycle)."
    )
    oscillating = (
        "FixedPoint: the iteration oscillates (x_{k+1} = x_{k-1} != x_k): fn has no attracting "
        "fixed point here (e.g. a slope of -1), so iterating it finds none."
    )
    rounding = (
        "FixedPoint: |fn(x) - x| is small at x only through rounding: fn's own changes there "
        "are below its floating-point resolution (the residual does not follow fn's "
        "derivative), so x is no fixed point of fn as written. Solve in float64, rescale the "
        "state, or start nearer a fixed point."
    )
    singular = (
        "FixedPoint: the implicit derivative needs a solve with I - dfn/dx at x*, and that "
        "system could not be solved to rtol within max_steps products: I - dfn/dx is singular "
        "(the fixed point is not isolated, so its derivative does not exist or is not unique), "
        "or, with Implicit('neumann'), dfn/dx does not contract or contracts too weakly for "
        "max_steps (raise max_steps, or use the default Implicit())."
    )


#: Appended to every failure raised by the forward solve.
VMAP_HINT = (
    " (The line printed above this error gives fn's spectral radius where the solve stopped. "
    "Under jax.vmap this is raised if any example fails, with one failed example's message; "
    "the line above says how many failed and which; with throw=False, solution.converged "
    "says which did.)"
)


def messages(advice: Callable[[str], str]) -> tuple[str, ...]:
    """Every outcome's message, indexed by its code, each followed by `advice(name)` (a
    solver's own suggestion for that outcome) and by how to find the failed examples of a
    batch, for `eqx.branched_error_if`."""
    texts = list(FixedPointResult._index_to_message)
    for name, item in FixedPointResult._name_to_item.items():
        index = int(jax.tree_util.tree_leaves(item)[0])
        if texts[index]:
            texts[index] = texts[index] + advice(name) + VMAP_HINT
    return tuple(texts)


def converged(result: FixedPointResult):
    """Whether `result` is one of the converged outcomes (a boolean array)."""
    return (result == FixedPointResult.successful) | (
        result == FixedPointResult.floating_point_floor
    )
