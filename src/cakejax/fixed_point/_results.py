"""What a fixed-point solve can end in: one enumeration, shared by the solvers, the derivative
rule and the layer."""

import equinox as eqx


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
        "FixedPoint: no convergence within max_steps; the iteration is still converging, "
        "only slowly (fn contracts weakly). Raise max_steps, loosen rtol/atol, or use a faster "
        "solver (cj.Anderson, cj.Newton)."
    )
    diverged = (
        "FixedPoint: the iteration does not converge: the residual |fn(x) - x| grew or stopped "
        "shrinking far from the floating-point floor, or became non-finite. fn is not a "
        "contraction near the iterates and the solver finds no fixed point from this x0 (a "
        "repelling fixed point can be found with solver=cj.Newton())."
    )
    oscillating = (
        "FixedPoint: the iteration oscillates (x_{k+1} = x_{k-1} != x_k): fn has no attracting "
        "fixed point here (e.g. a slope of -1), so iterating it finds none."
    )
    singular = (
        "FixedPoint: the implicit derivative needs a solve with I - dfn/dx at x*, and that "
        "system could not be solved to rtol within max_steps products: I - dfn/dx is singular "
        "(the fixed point is not isolated, so its derivative does not exist or is not unique), "
        "or, with Implicit('neumann'), dfn/dx does not contract or contracts too weakly for "
        "max_steps (raise max_steps, or use the default Implicit())."
    )


def converged(result: FixedPointResult):
    """Whether `result` is one of the converged outcomes (a boolean array)."""
    return (result == FixedPointResult.successful) | (
        result == FixedPointResult.floating_point_floor
    )
