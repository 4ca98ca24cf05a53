r"""The loop shared by every forward solver: one place that decides when an iteration has
converged, stalled at the floating-point floor, cycles, or diverges.

**Convergence is judged on the estimated error, not on the step.** With the residual
$r = f(x) - x$ and the slope of $f$ along the last step,
$\mu = \langle \Delta f, \Delta x\rangle / \langle \Delta x, \Delta x\rangle$ (a secant estimate
of $\partial f/\partial x$ where the error lives), the distance to the fixed point is
$\|x - x^\star\| \approx \|(I - \partial f/\partial x)^{-1} r\| \approx \|r\| / |1 - \mu|$,
used only where it is larger than $\|r\|$ ($|1 - \mu| < 1$): a large secant slope, as after a
jump or a blow-up, never excuses a residual.
Stopping on $\|r\|$ alone (the Picard step) would leave an error of $\|r\|\,/(1 - \rho)$, a
hundred times the tolerance at $\rho = 0.99$. The loop stops when
$\|r\|_\infty / \min(|1 - \mu|, 1) \le \tfrac12(\text{atol} + \text{rtol} \cdot s)$
(a safety factor) with the scale $s = \max(\|x\|_\infty, \|f(x_0)\|_\infty)$: relative to
the problem's own size, so a state of size $10^{-12}$ and one of size $10^{12}$ are solved to
the same relative accuracy.

**The floating-point floor.** Rounding makes $r$ noisy at about machine epsilon times the
sizes involved; a tolerance below that cannot be met. When the smallest residual seen has not
improved for `PATIENCE` steps and is at most `FLOOR_ULPS` epsilons of the scale, the solve ends
`floating_point_floor` (converged as far as the dtype allows), returning the iterate of
smallest residual. A two-cycle ($x_{k+1} = x_{k-1} \ne x_k$, no improvement for `PATIENCE`
steps) ends `oscillating`. Nothing else stops the loop early: a residual that grows for a while
(in the max norm, a non-normal Jacobian can do that for many steps) may still converge. Out of
steps, the solve is `max_steps_reached` if it has made progress and is still shrinking the
residual, `diverged` otherwise (and at once on a non-finite iterate).
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from ._results import FixedPointResult
from ._solver import AbstractFixedPointSolver, Vector


#: The estimated error must be within this fraction of the tolerance: the secant slope is an
#: estimate, and rounding in the residual can make it optimistic by tens of percent.
SAFETY = 0.5
#: Steps without a new smallest residual after which the iteration counts as stalled.
PATIENCE = 10
#: A stall counts as the floating-point floor when the smallest residual is at most this many
#: machine epsilons of the problem's scale (see `floor`).
FLOOR_ULPS = 1024


class Forward(NamedTuple):
    """What the loop returns: the solution, its true residual max|f(x) - x|, the number of
    solver steps, and the outcome."""

    value: Vector
    residual: Float[Array, ""]
    steps: Int[Array, ""]
    result: FixedPointResult


class _Carry(NamedTuple):
    k: Int[Array, ""]
    x: Vector
    fx: Vector
    x_prev: Vector
    fx_prev: Vector
    x_prev2: Vector
    residual_prev: Float[Array, ""]
    best_x: Vector
    best_residual: Float[Array, ""]
    since_best: Int[Array, ""]
    state: Any


def _max(v: Array) -> Array:
    return jnp.max(jnp.abs(v), initial=0)


def floor(scale: Array) -> Array:
    """The residual below which rounding error dominates, for a problem of size `scale`."""
    return FLOOR_ULPS * jnp.finfo(scale.dtype).eps * scale


def iterate(
    solver: AbstractFixedPointSolver,
    f: Callable[[Vector], Vector],
    x0: Vector,
    rtol: float,
    atol: float,
    max_steps: int,
) -> Forward:
    """Runs `solver` on $x = f(x)$ from `x0` (flat vectors) with the stopping rules above."""
    fx0 = f(x0)
    reference = _max(fx0)

    def scale(x):
        return jnp.maximum(_max(x), reference)

    def converged(c: _Carry):
        residual = _max(c.fx - c.x)
        dx, df = c.x - c.x_prev, c.fx - c.fx_prev
        dd = jnp.vdot(dx, dx)
        slope = jnp.vdot(df, dx) / jnp.where(dd > 0, dd, 1)
        # The slope may only make the estimate larger than the residual (|1 - μ| < 1), never
        # smaller: far from a fixed point (a jump, a blow-up) the secant slope is huge and
        # would excuse any residual.
        gap = jnp.minimum(jnp.abs(1 - slope), 1)
        error = residual <= SAFETY * gap * (atol + rtol * scale(c.x))
        ok = (residual == 0) | ((c.k >= 1) & (dd > 0) & error)
        return ok & jnp.isfinite(residual)

    def finite(c: _Carry):
        return jnp.all(jnp.isfinite(c.x)) & jnp.all(jnp.isfinite(c.fx))

    def at_floor(c: _Carry):
        size = jnp.maximum(_max(c.best_x), reference)
        return (c.since_best >= PATIENCE) & (c.best_residual <= floor(size))

    def cycling(c: _Carry):
        size = scale(c.x)
        two_cycle = (_max(c.x - c.x_prev2) <= floor(size)) & (_max(c.x - c.x_prev) > floor(size))
        return (c.since_best >= PATIENCE) & two_cycle

    def cond(c: _Carry):
        # Only a floor stall or a two-cycle ends the loop early: a residual that grows for a
        # while (transient growth of a non-normal Jacobian in the max norm) may still converge.
        stop = converged(c) | ~finite(c) | at_floor(c) | cycling(c)
        return (c.k < max_steps) & ~stop

    def body(c: _Carry):
        x_new, state = solver.step(f, c.x, c.fx, c.state)
        fx_new = f(x_new)
        residual = _max(fx_new - x_new)
        better = residual < c.best_residual
        return _Carry(
            k=c.k + 1,
            x=x_new,
            fx=fx_new,
            x_prev=c.x,
            fx_prev=c.fx,
            x_prev2=c.x_prev,
            residual_prev=_max(c.fx - c.x),
            best_x=jnp.where(better, x_new, c.best_x),
            best_residual=jnp.where(better, residual, c.best_residual),
            since_best=jnp.where(better, 0, c.since_best + 1),
            state=state,
        )

    residual0 = _max(fx0 - x0)
    init = _Carry(
        k=jnp.asarray(0),
        x=x0,
        fx=fx0,
        x_prev=x0,
        fx_prev=fx0,
        x_prev2=x0,
        residual_prev=jnp.asarray(jnp.inf, residual0.dtype),
        best_x=x0,
        best_residual=jnp.where(jnp.isnan(residual0), jnp.inf, residual0),
        since_best=jnp.asarray(0),
        state=solver.init(f, x0, fx0),
    )
    c = jax.lax.while_loop(cond, body, init)

    done = converged(c)
    residual = _max(c.fx - c.x)
    progressing = (residual < c.residual_prev) & (c.best_residual < residual0)
    failure = FixedPointResult.where(
        progressing, FixedPointResult.max_steps_reached, FixedPointResult.diverged
    )
    failure = FixedPointResult.where(cycling(c), FixedPointResult.oscillating, failure)
    failure = FixedPointResult.where(at_floor(c), FixedPointResult.floating_point_floor, failure)
    failure = FixedPointResult.where(finite(c), failure, FixedPointResult.diverged)
    result = FixedPointResult.where(done, FixedPointResult.successful, failure)
    value = jnp.where(done, c.x, c.best_x)
    return Forward(value, jnp.where(done, residual, c.best_residual), c.k, result)
