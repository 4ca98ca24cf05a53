r"""The loop shared by every forward solver: one place that decides when an iteration has
converged, stalled at the floating-point floor, cycles, or diverges.

**Convergence is judged on the estimated error, not on the step.** With the residual
$r = f(x) - x$ and the slope of $f$ along the last step,
$\mu = \langle \Delta f, \Delta x\rangle / \langle \Delta x, \Delta x\rangle$ (a secant estimate
of $\partial f/\partial x$ where the error lives), the distance to the fixed point is
$\|x - x^\star\| \approx \|(I - \partial f/\partial x)^{-1} r\| \approx \|r\| / \gamma$ with
the gap $\gamma = \min(|1 - \mu|, 1)$: used only where it is larger than $\|r\|$, so a large
secant slope, as after a jump or a blow-up, never excuses a residual.
Stopping on $\|r\|$ alone (the Picard step) would leave an error of $\|r\|\,/(1 - \rho)$, a
hundred times the tolerance at $\rho = 0.99$. The loop stops when
$\|r\|_\infty / \gamma \le \tfrac12(\text{atol} + \text{rtol} \cdot s)$
(a safety factor) with the scale $s = \max(\|x\|_\infty, \|f(x)\|_\infty)$ of the *current*
iterate: relative to the answer, whatever its units and wherever the solve began (a scale
taken from the start let a start at $10^8$ stop at 24.8 when the answer was 1). A fixed point
at $x^\star = 0$ has no relative accuracy: give `atol` there.

**NaN-safe by construction.** Every norm is $\infty$ unless all its elements are finite
(`isfinite(...).all()`): on CPU, `jnp.max` over 4096 or more elements ignores NaN.

**Stalls are judged against the expected progress.** With the rate $q = 1 - |\mu|$ (1 where
the slope does not contract), a step makes progress when its residual is below the last one
that did by a quarter of what a linear iteration at that rate gains in a step
($r \le r_\text{record}(1 - q/4)$), so that records beaten by ever smaller margins (a map with
no fixed point, its residual approaching a positive infimum) are no progress. No progress for
`PATIENCE` steps is only a stall if a linear iteration at that rate would have shrunk the
residual by $e^{-\text{STALL}}$ in that time ($\text{steps} \cdot q \ge \text{STALL}$):
at $\rho = 0.999$ the residual shrinks by 0.1 % a step, less than its own
rounding, and a fixed patience read that as a stall (float32 dough at $a = 0.999$ ended at 9905,
not 10000, as the floor). Near the floor the secant slope is rounding noise, $q$ is of order
one and a real stall is seen after `PATIENCE` steps.

**Outcomes.** A stall with the smallest residual at most $\varepsilon_f s$
($\varepsilon_f$ = `floor_tolerance`) ends `floating_point_floor` (converged as far as the dtype
allows), returning the iterate of smallest residual; a stall with a secant slope of $-1$
($x_{k+1} = x_{k-1} \ne x_k$) ends `oscillating`. Nothing else stops the loop early: a residual
that grows for a while (in the max norm, a non-normal Jacobian can do that for many steps) may
still converge. Out of steps, the solve is `max_steps_reached` if it is still making progress
(not stalled), `diverged` otherwise (and at once on a non-finite iterate).

**Rounding cannot fake a fixed point.** Far out, a map's own changes can fall below its
floating-point resolution ($x + 1 + \tfrac12\sin x$ at $x = 10^9$ in float32 rounds to $x$):
the residual is zero, yet there is no fixed point. Once per solve, a converged $x$ is probed
at $x + h$, $h = \sqrt{\varepsilon}\, s$ along the signs of $x$: the change of the residual
must follow the derivative, $g(x + h) - g(x) \approx (\partial f/\partial x - I)\,h$. Where the
derivative predicts a change far above rounding and the residual does not follow it, the
outcome is `rounding`, not converged. One evaluation and one Jacobian-vector product a solve.

**A plain phase** (for solvers that ask for one, `plain_damping`: Anderson with a history
shorter than the state) runs damped Picard steps with the same convergence test and no other
records while each shrinks the residual at least `SWITCH`-fold, then hands the iterate, the
one before and the slope to the main loop, which starts its records there (the best iterate
is the one before if the last step was too slow).

The carry holds three state vectors (the iterate, its image, the best iterate) and scalars;
everything else is computed within a step.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from .._typing import describe
from ._results import FixedPointResult
from ._solver import AbstractFixedPointSolver, Vector


#: The estimated error must be within this fraction of the tolerance: the secant slope is an
#: estimate, and rounding in the residual can make it optimistic by tens of percent.
SAFETY = 0.5
#: The fewest steps without a new smallest residual that can count as a stall.
PATIENCE = 10
#: A stall also needs steps x gap >= STALL: a linear iteration would have shrunk the residual
#: by e^-STALL (about 20x) in that time.
STALL = 3.0
#: The floor is at most this many machine epsilons of the scale (see `floor_tolerance`).
FLOOR_ULPS = 1024
#: A step resolves the gap when |dx| * gap >= RESOLVE * eps * s (the slope's rounding error
#: is then at most a quarter of the gap).
RESOLVE = 4.0
#: A residual at most this many epsilons of the scale (two ulps) is at its rounding: the floor.
ROUNDING = 2.0
#: A floor's residual is at most this many times the rounding noise measured at the answer.
FLOOR_NOISE = 8.0
#: The most a slow iteration is taken to amplify rounding noise at the floor.
AMPLIFICATION = 1024.0
#: The rounding probe judges a change of the residual that is at least this many times its
#: measured rounding noise.
PROBE_RESOLVE = 8.0
#: A cycle's steps are at least this many epsilons of the scale.
CYCLE_STEP = 256.0
#: Solvers with a plain phase (`AbstractFixedPointSolver.plain_damping`) take damped Picard
#: steps while each shrinks the residual's max norm at least this much.
SWITCH = 0.5
#: A stalled residual is noise (the floor) when it has fluctuated by this fraction of its
#: smallest value since the last progress.
NOISE = 0.5


def norm(v: Array) -> Float[Array, ""]:
    """max|v|, or inf unless every element is finite: NaN is counted as inf before the
    maximum (a max over 4096 or more elements may drop NaN on CPU, never inf). One
    reduction, so one kernel: a norm is taken a dozen times a solve."""
    return jnp.max(jnp.where(jnp.isnan(v), jnp.inf, jnp.abs(v)), initial=0)


def floor_tolerance(dtype) -> float:
    """The relative residual below which rounding error dominates: FLOOR_ULPS epsilons
    (1.2e-4 in float32, 2.3e-13 in float64), at most sqrt(eps) (bfloat16: 0.088)."""
    eps = float(jnp.finfo(dtype).eps)
    return min(FLOOR_ULPS * eps, eps**0.5)


class Forward(NamedTuple):
    """What the loop returns: the solution, its true residual max|f(x) - x|, the number of
    solver steps, and the outcome."""

    value: Vector
    residual: Float[Array, ""]
    steps: Int[Array, ""]
    result: FixedPointResult


class _Carry(NamedTuple):
    """The loop's state: three state vectors (the iterate, its image, the best iterate) and
    scalars. Every verdict is reached in the body and carried as `verdict`, so that the loop's
    condition is two comparisons: under `vmap` it is evaluated again for every lane's select."""

    k: Int[Array, ""]
    x: Vector
    fx: Vector
    slope: Float[Array, ""]  # the last resolved secant slope
    measured: Bool[Array, ""]  # whether a step has resolved the slope
    rounded: Bool[Array, ""]  # whether the residual is at its rounding (two ulps of the scale)
    best_x: Vector
    best_residual: Float[Array, ""]
    record: Float[Array, ""]  # the residual last counted as progress
    peak: Float[Array, ""]  # the largest residual since the record
    since_record: Int[Array, ""]
    verdict: Int[Array, ""]  # RUNNING, or why the loop stopped
    state: Any


# The loop's verdicts: still running, converged, at the floor after a stall, at the floor with
# the residual at its rounding (the last iterate is returned), cycling, non-finite.
RUNNING, CONVERGED, FLOOR, ROUNDED, CYCLING, NONFINITE = range(6)


def _gap(slope):
    """min(|1 - slope|, 1): the error estimate's divisor."""
    return jnp.minimum(jnp.abs(1 - slope), 1)


def _rate(slope):
    """1 - |slope| where that is in (0, 1] (a contraction's relative gain a step), else 1 (no
    contraction: no progress to wait for)."""
    rate = 1 - jnp.abs(slope)
    return jnp.where(rate > 0, rate, 1)


def _step(solver: AbstractFixedPointSolver, f, x: Vector, fx: Vector, state):
    """`solver.step`, checked (at trace time) to return an iterate like `x`: a user's solver
    that returns another shape would otherwise fail deep inside XLA."""
    new, state = solver.step(f, x, fx, state)
    if jnp.shape(new) != x.shape or jnp.result_type(new) != x.dtype:
        raise TypeError(
            f"FixedPoint: the solver {type(solver).__name__}'s step returned "
            f"{describe(new)}, expected {describe(x)}: a solver works on the state flattened "
            "into one vector, and `step` must return the next iterate of that shape and dtype "
            "(with its own new state)."
        )
    return new, state


def iterate(
    solver: AbstractFixedPointSolver,
    f: Callable[[Vector], Vector],
    x0: Vector,
    rtol: float,
    atol: float,
    max_steps: int,
    *,
    precision=None,
) -> Forward:
    """Runs `solver` on $x = f(x)$ from `x0` (flat vectors) with the rules above. `precision`
    is the dtype whose rounding `f` suffers (default: the state's)."""
    floor = floor_tolerance(x0.dtype if precision is None else precision)
    eps = float(jnp.finfo(x0.dtype if precision is None else precision).eps)

    def stalled(since_record, slope):
        return (since_record >= PATIENCE) & (since_record * _rate(slope) >= STALL)

    def measure(x, fx, x_prev, fx_prev, last_slope, last_measured):
        """The residual, the scale, the step and its secant slope, the slope now in force and
        whether one is, and whether (x, fx) is converged (with and without the safety
        factor)."""
        # Finite residual implies finite x and fx (inf - inf is NaN): the other norms are
        # plain maxima.
        residual = norm(fx - x)
        scale = jnp.maximum(jnp.max(jnp.abs(x), initial=0), jnp.max(jnp.abs(fx), initial=0))
        dx, df = x - x_prev, fx - fx_prev
        dd = jnp.vdot(dx, dx)
        step_slope = jnp.vdot(df, dx) / jnp.where(dd > 0, dd, 1)
        step = jnp.max(jnp.abs(dx), initial=0)
        # The slope's rounding error is about eps * s / |dx|; it counts only where that is
        # well below its distance to +-1 (which sets the gap and the rate). Otherwise (steps
        # at the rounding level, near the floor) the last resolved slope stands.
        sharp = jnp.minimum(jnp.minimum(jnp.abs(1 - step_slope), jnp.abs(1 + step_slope)), 1)
        resolved = (dd > 0) & (step * sharp >= RESOLVE * eps * scale)
        slope = jnp.where(resolved, step_slope, last_slope)
        measured = last_measured | resolved
        # The residual is only known to its rounding, about half an ulp of the scale: the
        # error estimate is at least that over the gap, whatever the computed residual (a
        # residual of exactly zero included).
        known = jnp.maximum(residual, eps * scale / 2)
        bound = _gap(slope) * (atol + rtol * scale)
        done = measured & (known <= SAFETY * bound)
        # Without the safety factor: a residual at its rounding that meets this is converged
        # (iterating further cannot make it smaller).
        met = measured & (known <= bound)
        return residual, scale, step_slope, step, slope, measured, done, met

    def judge(x, fx, x_prev, fx_prev, c: _Carry, first: bool) -> _Carry:
        """The carry at (x, fx), reached by the last step from (x_prev, fx_prev), with the
        verdict on it; `c` holds the records before this step."""
        residual, scale, step_slope, step, slope, measured, done, met = measure(
            x, fx, x_prev, fx_prev, c.slope, c.measured
        )

        better = residual < c.best_residual
        best_residual = jnp.where(better, residual, c.best_residual)
        # Progress is a residual below the record by a quarter of what a linear iteration
        # at this rate gains in a step: records beaten by ever smaller margins (a map with
        # no fixed point, whose residual approaches its infimum) are no progress.
        progress = residual <= c.record * (1 - _rate(slope) / 4)
        record = jnp.where(progress, residual, c.record)
        peak = jnp.where(progress, residual, jnp.maximum(c.peak, residual))
        since_record = jnp.where(progress, 0, c.since_record + 1)
        stall = stalled(since_record, slope)

        # Noise-dominated: the residual fluctuates by half its smallest value or more, where
        # slow progress (a residual shrinking below its own resolution) changes it little.
        noisy = (since_record >= PATIENCE) & (peak >= (1 + NOISE) * record)
        # A residual at its own rounding (two ulps of the scale) for two steps running cannot
        # get smaller.
        rounded = residual <= ROUNDING * eps * scale
        at_rounding = rounded & c.rounded
        # Or a stall (at rho = 0.999, only after thousands of steps without progress), as
        # when rounding locks the iterates in a cycle of their own.
        best_x = jnp.where(better, x, c.best_x)
        # The best iterate's scale, max(|x|, |f(x)|), is at most |x| + its residual.
        best_scale = jnp.max(jnp.abs(best_x), initial=0) + best_residual
        stuck = (noisy | stall) & (best_residual <= floor * best_scale)
        # A two-cycle has a slope of exactly -1 along its steps, to the slope's rounding
        # (about eps * s / |dx|: steps near the rounding level, with noise for a slope, are
        # no cycle).
        exact = jnp.abs(1 + step_slope) * step <= RESOLVE * eps * scale
        cycle = stall & exact & (step >= CYCLE_STEP * eps * scale)

        verdict = jnp.asarray(RUNNING, jnp.int8)
        verdict = jnp.where(cycle, CYCLING, verdict)
        verdict = jnp.where(stuck, FLOOR, verdict)
        verdict = jnp.where(at_rounding, jnp.where(met, CONVERGED, ROUNDED), verdict)
        verdict = jnp.where(done, CONVERGED, verdict)
        verdict = jnp.where(jnp.isfinite(residual), verdict, NONFINITE)
        if first:  # no step taken: nothing measured yet, only finiteness to judge
            verdict = jnp.where(jnp.isfinite(residual), RUNNING, NONFINITE)
        return _Carry(
            k=c.k,
            x=x,
            fx=fx,
            slope=slope,
            measured=measured,
            rounded=rounded,
            best_x=best_x,
            best_residual=best_residual,
            record=record,
            peak=peak,
            since_record=since_record,
            verdict=verdict,
            state=c.state,
        )

    def cond(c: _Carry):
        return (c.k < max_steps) & (c.verdict == RUNNING)

    def body(c: _Carry):
        x, state = _step(solver, f, c.x, c.fx, c.state)
        fx = f(x)
        return judge(x, fx, c.x, c.fx, c._replace(k=c.k + 1, state=state), first=False)

    fx0 = f(x0)
    zero = jnp.zeros((), x0.dtype)
    inf = jnp.asarray(jnp.inf, x0.dtype)
    init = _Carry(
        k=jnp.asarray(0),
        x=x0,
        fx=fx0,
        slope=zero,
        measured=jnp.asarray(False),
        rounded=jnp.asarray(False),
        best_x=x0,
        best_residual=inf,
        record=inf,
        peak=inf,
        since_record=jnp.asarray(-1),
        verdict=jnp.asarray(RUNNING, jnp.int8),
        state=solver.init(f, x0, fx0),
    )
    damping = solver.plain_damping(x0)
    if damping is None:
        start = judge(x0, fx0, x0, fx0, init, first=True)
    else:
        start = _plain_phase(f, x0, fx0, damping, max_steps, measure, judge, init, solver)
    c = jax.lax.while_loop(cond, body, start)

    residual = norm(c.fx - c.x)
    # Out of steps: still making progress, or pushed away (an expanding slope and a residual
    # above the record), or stalled.
    pushed = (jnp.abs(c.slope) > 1) & (residual > c.record)
    out_of_steps = FixedPointResult.where(
        stalled(c.since_record, c.slope) | pushed,
        FixedPointResult.diverged,
        FixedPointResult.max_steps_reached,
    )
    result = FixedPointResult.where(
        c.verdict == CONVERGED,
        FixedPointResult.successful,
        FixedPointResult.where(
            (c.verdict == FLOOR) | (c.verdict == ROUNDED),
            FixedPointResult.floating_point_floor,
            FixedPointResult.where(
                c.verdict == CYCLING,
                FixedPointResult.oscillating,
                FixedPointResult.where(
                    c.verdict == NONFINITE, FixedPointResult.diverged, out_of_steps
                ),
            ),
        ),
    )
    # Converged, or stopped with the residual at its rounding: the last iterate (which the
    # rounding probe then judges); otherwise the iterate of smallest residual.
    last = (c.verdict == CONVERGED) | (c.verdict == ROUNDED)
    value = jnp.where(last, c.x, c.best_x)
    residual = jnp.where(last, residual, c.best_residual)
    faked, noise = _probe(f, value, eps)
    result = FixedPointResult.where(
        (result == FixedPointResult.successful) | (result == FixedPointResult.floating_point_floor),
        FixedPointResult.where(faked, FixedPointResult.rounding, result),
        result,
    )
    # A floor is where the residual is rounding noise: at most FLOOR_NOISE times the noise
    # measured at x, amplified by a slow iteration (rounding errors add up over 1 / rate
    # steps: Picard at a slope of -0.995 rests at 150 ulps), up to AMPLIFICATION-fold. A
    # residual far above it (a map whose residual merely stopped shrinking) is no floor.
    amplified = noise * jnp.minimum(1 / _rate(c.slope), AMPLIFICATION)
    unheard = residual > FLOOR_NOISE * amplified
    result = FixedPointResult.where(
        (result == FixedPointResult.floating_point_floor) & unheard,
        FixedPointResult.diverged,
        result,
    )
    return Forward(value, residual, c.k, result)


class _Plain(NamedTuple):
    """The plain phase's carry: the iterate, the one before, the slope, the last two
    residuals, and whether the phase goes on."""

    k: Int[Array, ""]
    x: Vector
    fx: Vector
    x_prev: Vector
    fx_prev: Vector
    slope: Float[Array, ""]
    measured: Bool[Array, ""]
    residual: Float[Array, ""]
    residual_prev: Float[Array, ""]
    running: Bool[Array, ""]


def _plain_phase(f, x0, fx0, damping, max_steps, measure, judge, init: _Carry, solver):
    r"""Damped Picard steps $x \leftarrow x + \beta\,(f(x) - x)$ while each shrinks the
    residual's max norm by at least `SWITCH`, with the main loop's convergence test and
    nothing else; returns the main loop's carry where they stopped (converged, or handed over
    to `solver` with the last difference as its first history). The carry holds no solver
    state, so under `vmap` a batch whose lanes all converge here never touches (or copies,
    step after step) an accelerator's history."""

    def cond(p: _Plain):
        return (p.k < max_steps) & p.running

    def body(p: _Plain):
        x = p.fx if damping == 1.0 else p.x + damping * (p.fx - p.x)
        fx = f(x)
        residual, _, _, _, slope, measured, done, _ = measure(x, fx, p.x, p.fx, p.slope, p.measured)
        # Strictly smaller: a residual of exactly 0 (a start at the fixed point) hands over at
        # once, to the main loop's rounding rules (it would halve "0" forever).
        fast = residual < SWITCH * p.residual  # False for NaN
        return _Plain(
            p.k + 1, x, fx, p.x, p.fx, slope, measured, residual, p.residual, fast & ~done
        )

    residual0 = norm(fx0 - x0)
    zero = jnp.zeros((), x0.dtype)
    p0 = _Plain(
        jnp.asarray(0),
        x0,
        fx0,
        x0,
        fx0,
        zero,
        jnp.asarray(False),
        residual0,
        residual0,
        jnp.isfinite(residual0),
    )
    p = jax.lax.while_loop(cond, body, p0)
    # The records start at the iterate before the last (whose residual was the smaller one
    # when the last step was too slow), so the best iterate is never lost.
    carry = init._replace(
        k=p.k,
        slope=p.slope,
        measured=p.measured,
        best_x=p.x_prev,
        best_residual=p.residual_prev,
        record=p.residual_prev,
        peak=p.residual_prev,
        since_record=jnp.asarray(0),
        state=solver.init(f, p.x_prev, p.fx_prev),
    )
    return judge(p.x, p.fx, p.x_prev, p.fx_prev, carry, first=False)


def _probe(f: Callable[[Vector], Vector], x: Vector, eps: float):
    r"""Once per solve, at the answer `x`: whether rounding fakes the fixed point (the residual
    does not follow `f`'s derivative over $h = \sqrt\varepsilon\,s$ where the derivative
    predicts a change of more than `PROBE_RESOLVE` times the rounding noise), and that noise:
    the residual's departure from its linear change over 16 ulps, at least an ulp of the
    scale. The threshold is the measured noise, not a fixed number of ulps: a solver that
    homes in on the smallest computed residual (Anderson on $x + 1 + \tfrac12\sin x$ stops
    where $f' - 1$ is 0.0055) predicts a change of only 25 ulps over $h$."""
    scale = jnp.maximum(norm(x), 0)
    direction = jnp.where(x >= 0, 1, -1).astype(x.dtype) * scale
    fx, jd = jax.jvp(f, (x,), (direction,))
    g = fx - x
    size = jnp.maximum(scale, norm(fx))

    def departure(step):
        h = step * direction
        predicted = step * (jd - direction)
        return predicted, (f(x + h) - (x + h)) - g - predicted

    _, jitter = departure(16 * eps)
    noise = jnp.maximum(norm(jitter), eps * size)
    predicted, departed = departure(eps**0.5)
    resolved = norm(predicted) > PROBE_RESOLVE * noise
    faked = resolved & (norm(departed) > 0.5 * norm(predicted))
    return faked, noise
