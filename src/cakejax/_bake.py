r"""Baking the best cake: maximising a score over ingredient amounts within bounds, by a
trust-region Newton method that touches the Hessian only through Hessian-vector products.

**The method.** To maximise $s(x)$ subject to $l \le x \le u$, minimise $f = -s$ over
unconstrained variables $y$ with $x = l + y^2$ (no upper bound) or
$x = l + (u - l)\sin^2 y$ (`_Box`): every $y$ is a feasible recipe, so no amount ever leaves
its bounds and nothing is clipped. Each step solves the trust-region subproblem in $y$ by
Steihaug–Toint CG (`_steihaug`: one Hessian-vector product an iteration; directions of
negative curvature followed to the trust region's edge, so an indefinite Hessian, as the
course's is at its own cake, is handled). A step is accepted when the actual decrease is at
least $10^{-4}$ of the model's; the radius shrinks to a quarter of the step when the ratio
is below $\tfrac14$ and doubles when it is above $\tfrac34$ at the edge.

*Why a reparametrisation, not projection.* The course's cost has powers of the amounts:
$x^{1.2}$ (butter) has an infinite second derivative at 0, and $x^{0.9}$ (flour) an infinite
slope. A projected Newton method on $x$ zig-zags at such a bound (its quadratic model is
wrong there by an unbounded amount: on the course's score it crawled, the best butter being
$3 \cdot 10^{-5}$); in $y$ they are $|y|^{2.4}$ and $|y|^{1.8}$. At a bound ($y = 0$)
$\partial f/\partial y = 0$ and the curvature along $y$ is $2\,\partial f/\partial x$:
positive where the bound holds the optimum, negative where the score wants to leave it,
which the negative-curvature steps then do (a start exactly on a bound is moved off it by
a rounding-level amount for this).

**Convergence** is the first-order (KKT) condition in $x$, made dimensionless:
$\|x - P(x - \gamma\nabla f)\|_\infty \le \text{rtol}\cdot s_x$ with
$\gamma = s_x^2/s_f$, $s_x = \max(\|x\|_\infty, \|x_0\|_\infty)$ and
$s_f = \max(|f(x)|, |f(x_0)|)$ ($P$ the
projection on the box): zero exactly where every free component of the gradient vanishes
and every amount at a bound is pushed outward, whatever the units of the score and the
amounts. Its scales are floored at the start's, so it is only the first of two tests: up to
`DENSE` amounts, a point that passes it is checked once (`_second_order`, on the Hessian
formed from Hessian-vector products): a maximum to second order (negative curvature is
followed out of a saddle or a minimum of the score, as a start at a stationary point is)
whose Newton step moves no amount by more than rtol of the answer's largest (a far start
no longer stops early; amounts that the answer puts on a bound are held). `successful`
means both held; beyond `DENSE` amounts, the first alone. Under vmap the check runs once a
round for the batch (a round ends when every example has passed the first test or failed),
not once a step. Where it fails, its own step is tried at once (`leave`: the Newton step,
or along negative curvature, shortened until no worse), and the search goes on from there.
Amounts within rounding of a bound that holds them are then put on it, where that
does not lower the score. `RecipeSolution.projected_gradient` reports $\|P\nabla s\|_\infty$,
the gradient with the components held at a bound zeroed.

**Derivatives of the optimum** with respect to the score's parameters $\theta$ (its inexact
array leaves) come from the optimality conditions, with the active set held fixed: the free
components satisfy $\nabla_F f(x^\star, \theta) = 0$, so
$H_{FF}\,\dot x_F = -\partial_\theta \nabla_F f\,\dot\theta$ and $\dot x_A = 0$
(`eqx.filter_custom_jvp`; reverse mode transposes it). Up to `DENSE` = 256 amounts $H_{FF}$ is
formed from Hessian-vector products and Cholesky-factorised: exact on coupled problems, and
the factorisation certifies a strict local maximum (a line or valley of optima, or a
saddle, has no derivative: an error, or NaN with `throw=False` and the result `singular`).
Beyond, lineax's GMRES on Hessian-vector products, its breakdown reported, not raised. The
mixed derivative $\partial_\theta \nabla f$ is formed by forward mode for up to `MIXED` = 256
parameters and masked before it meets $\dot\theta$, so that reverse mode never multiplies
an infinite slope at a held bound ($\text{flour}^{0.9}$ at 0) by zero. The score's own
derivative there is $\partial_\theta s$ (the envelope theorem).
"""

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.core  # for jax.core.Tracer (named, so that type checkers see it)
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, ArrayLike, Float, Int

from ._arguments import count, tolerance
from ._autodiff import close_over_tracers
from ._programs import bounded_jit
from ._steihaug import steihaug
from ._typing import describe, describe_tree
from .fixed_point._gate import gate


class RecipeResult(eqx.Enumeration):
    """How `optimise_recipe` ended (`RecipeSolution.result`)."""

    successful = ""
    max_steps_reached = (
        "optimise_recipe: no convergence within max_steps (the projected gradient is still "
        "above rtol): raise max_steps or loosen rtol."
    )
    stalled = (
        "optimise_recipe: the trust region shrank to rounding level without meeting rtol: "
        "the score is not smooth enough here, or rtol asks for more than the dtype gives."
    )
    non_finite = (
        "optimise_recipe: the score or its gradient became NaN or infinite at a free "
        "ingredient amount (from the start if a parameter of the score is NaN; an infinite "
        "slope is allowed only where a bound holds it)."
    )
    singular = (
        "optimise_recipe: the optimum is not a strict local maximum (the score's Hessian on "
        "the free amounts is singular or not negative definite there: a line or valley of "
        "optima, or a saddle), so it has no derivative with respect to the score's "
        "parameters."
    )


class RecipeSolution(eqx.Module):
    """The outcome of `optimise_recipe`.

    **Fields:**

    - `recipe`: the ingredient amounts found (within the bounds, always).
    - `score`: the score there.
    - `projected_gradient`: $\\|P\\nabla s\\|_\\infty$ there, the gradient with the components
      held at a bound zeroed (in the score's units per amount).
    - `steps`: trust-region iterations.
    - `evaluations`: evaluations of the score with its gradient: one per step (the trial
      point's, which gives the convergence test its gradient in the amounts' own coordinates
      too), the start's and the answer's. Where the second-order check fails, its step is
      tried at 12 lengths at once (values only, not counted).
    - `hvps`: Hessian-vector products.
    - `result`: a `RecipeResult`. `successful` means a maximum found to `rtol`: the
      first-order (KKT) conditions, and up to 256 amounts the second-order ones (a negative
      definite or semidefinite Hessian on the free amounts) with a Newton step below `rtol`
      of the answer's scale.
    """

    recipe: Float[Array, " n"]
    score: Float[Array, ""]
    projected_gradient: Float[Array, ""]
    steps: Int[Array, ""]
    evaluations: Int[Array, ""]
    hvps: Int[Array, ""]
    result: RecipeResult


#: What the callbacks of the solves running now raised, each to be raised again as itself
#: when its solve returns (see `_Callback`).
_RAISED: list[Exception] = []


class _Callback(eqx.Module):
    """The user's callback as `jax.debug.callback` calls it. An exception it raises is kept, so
    that `optimise_recipe` raises it as itself when the solve returns, instead of XLA's
    "CpuCallback error" around a printed traceback. (Equal for equal callbacks, so one
    callback compiles one program.)"""

    fn: Callable = eqx.field(static=True)

    def __call__(self, step, recipe, score) -> None:
        try:
            self.fn(step, recipe, score)
        except Exception as error:
            _RAISED.append(error)
            raise


class _Config(eqx.Module):
    rtol: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    throw: bool = eqx.field(static=True, default=True)
    callback: Callable | None = eqx.field(static=True, default=None)
    # Which bounds every amount has, where the arguments say so (see `_Box.sides`).
    sides: str = eqx.field(static=True, default="mixed")


def _free(x, g, lower, upper):
    return ~(((x <= lower) & (g > 0)) | ((x >= upper) & (g < 0)))


class _Box(eqx.Module):
    r"""The bounds as a reparametrisation, so that every $y$ is feasible and the search is
    unconstrained: $x = l + (u - l)\sin^2 y$ between two bounds, $x = l + y^2$ above a lower
    one, $x = u - y^2$ below an upper one, $x = y$ without any. At a bound ($y = 0$)
    $\partial f/\partial y = 0$ and the curvature along $y$ is $\pm 2\,\partial f/\partial x$
    (times $(u - l)$): positive where the bound holds the optimum, negative where the score
    wants to leave it, which the trust region's negative-curvature steps then do. Powers such
    as $x^{1.2}$ or $x^{0.9}$, whose second derivatives are infinite at 0, become
    $|y|^{2.4}$ and $|y|^{1.8}$."""

    lower: Array
    upper: Array
    #: "lower" where every amount has a lower bound and none an upper one, as the default
    #: (amounts >= 0) and any bounds given as numbers or NumPy arrays may say; else "mixed".
    #: "lower" is the one reparametrisation, without the others' branches: they cost
    #: optimise_recipes 7 % at 10^3 customers.
    sides: str = eqx.field(static=True, default="mixed")

    def _sides(self):
        below, above = jnp.isfinite(self.lower), jnp.isfinite(self.upper)
        # Infinite bounds replaced where they are not used, so no inf - inf is formed.
        lower, upper = jnp.where(below, self.lower, 0), jnp.where(above, self.upper, 0)
        # (A fixed amount, l = u, gets width 1: x = min(l + sin^2 y, u) = l, no 0/0 in y.)
        width = jnp.where(below & above & (upper > lower), upper - lower, 1)
        return below, above, lower, upper, width

    def bounded(self):
        """Whether each amount has a bound (and so a y = 0 on it)."""
        return jnp.isfinite(self.lower) | jnp.isfinite(self.upper)

    def x(self, y):
        if self.sides == "lower":
            return self.lower + y**2
        below, above, lower, upper, width = self._sides()
        return jnp.where(
            below & above,
            # l + (u - l) can round to above u: clipped, never outside the bounds.
            jnp.minimum(lower + width * jnp.sin(y) ** 2, upper),
            jnp.where(below, lower + y**2, jnp.where(above, upper - y**2, y)),
        )

    def y(self, x):
        below, above, lower, upper, width = self._sides()
        x_safe = jnp.where(below | above, x, 0)
        return jnp.where(
            below & above,
            jnp.arcsin(jnp.sqrt(jnp.clip((x_safe - lower) / width, 0, 1))),
            jnp.where(
                below,
                jnp.sqrt(jnp.maximum(x_safe - lower, 0)),
                jnp.where(above, jnp.sqrt(jnp.maximum(upper - x_safe, 0)), x),
            ),
        )


def _kkt(x, g, lower, upper, x_scale, f_scale):
    r"""The first-order (KKT) residual $\|x - P(x - \gamma g)\|_\infty / s_x$ with
    $\gamma = s_x^2 / s_f$: zero exactly at a point where every free component of $g$ is 0
    and every component at a bound is pushed outward; dimensionless."""
    return (
        jnp.max(jnp.abs(x - _projected(x, g, lower, upper, x_scale, f_scale)), initial=0) / x_scale
    )


def _projected(x, g, lower, upper, x_scale, f_scale):
    r"""$P(x - \gamma g)$, $\gamma = s_x^2 / s_f$, the projected gradient step of the KKT test
    (an infinite slope projects onto the bound it points to)."""
    gamma = x_scale**2 / f_scale
    step = jnp.where(jnp.isfinite(g), x - gamma * g, jnp.where(g > 0, -jnp.inf, jnp.inf))
    return jnp.clip(step, lower, upper)


def _onto_bound(x, g, lower, upper, x_scale, f_scale):
    """Amounts that the KKT test's projected step puts on a (finite) bound that the gradient
    holds them at: the answer's active set, where the search in y reaches the bound only in
    the limit."""
    projected = _projected(x, g, lower, upper, x_scale, f_scale)
    return jnp.isfinite(projected) & ~_free(projected, g, lower, upper), projected


def _solve(score, x0, lower, upper, config: _Config):
    """The trust-region loop, in the unconstrained variables of `_Box`. Returns (x, f,
    projected gradient norm, steps, hvps, code)."""
    box = _Box(lower, upper, config.sides)

    def f_x(x):
        return -score(x)

    def f(y):
        return f_x(box.x(y))

    eps = jnp.finfo(x0.dtype).eps
    f0 = f_x(x0)
    x_scale = jnp.max(jnp.abs(x0))
    x_scale = jnp.where(x_scale > 0, x_scale, 1)
    f_scale = jnp.where(jnp.abs(f0) > 0, jnp.abs(f0), 1)
    # A start exactly on a bound is moved off it by a rounding-level amount, so that a
    # bound the score wants to leave is not a stationary point of the search.
    y0 = box.y(x0)
    y0 = jnp.where((y0 == 0) & box.bounded(), jnp.sqrt(eps) * jnp.sqrt(x_scale), y0)

    def evaluate(y):
        """f at y and its gradients in y and in x, from one gradient evaluation (in x: the
        one in y is that times x'(y), elementwise, as reverse mode through `_Box` forms it)."""
        x, slope = jax.jvp(box.x, (y,), (jnp.ones_like(y),))
        fx, gx = jax.value_and_grad(f_x)(x)
        return fx, gx * slope, gx

    def scales(x, fx):
        """The KKT test's scales at x: its largest amount and |f|, floored at the start's."""
        return jnp.maximum(jnp.max(jnp.abs(x)), x_scale), jnp.maximum(jnp.abs(fx), f_scale)

    def kkt(y, fy, gx):
        """The KKT residual at y, from f and its gradient in x there."""
        x = box.x(y)
        return _kkt(
            x,
            gx,
            lower,
            upper,
            *scales(x, fy),
        )

    def held(y, gx):
        """Amounts that have reached a bound exactly (y underflowed, or sin² rounded to 0 or
        1) and that the gradient holds there: frozen, since their y-derivatives can be 0/0
        there (x^0.9 at x = 0)."""
        x = box.x(y)
        return ((x <= lower) | (x >= upper)) & ~_free(x, gx, lower, upper)

    def finite(y, fy, gy, gx):
        return jnp.isfinite(fy) & jnp.all(jnp.isfinite(jnp.where(held(y, gx), 0, gy)))

    def hvp_at(y):
        return lambda v: jax.jvp(jax.grad(f), (y,), (v,))[1]

    def verify(state):
        """A round's end: lanes whose gradient test passed (`PASSED`) are checked by
        `_second_order`. Where it fails, its step is tried at once (`retry`): the Newton
        step, or from a saddle or a minimum of the score the step along negative curvature;
        a lane so moved is judged again (and checked again next round if it passes), the
        others go on stepping. Taking the check's exact step here, not in the loop's body,
        keeps the body as it was (a select between the two steps there cost
        optimise_recipes 1.2x) and saves the trust region's steps back to the answer."""
        y, fy, gy, gx, radius, steps, hvps, code = state
        if y.size > DENSE:
            return state._replace(code=jnp.where(code == PASSED, 1, code))

        def check(operand):
            y, fy, radius = operand
            x = box.x(y)
            # The amounts that the answer puts on a bound are held (as `held` ones are): a
            # Newton step on them would misjudge the distance to the answer (flour^0.9, 1e-4
            # from 0, overshoots, and drags the amounts coupled to it).
            onto, _ = _onto_bound(
                x,
                gx,
                lower,
                upper,
                *scales(x, fy),
            )
            frozen = held(y, gx) | onto
            return _second_order(
                hvp_at(y),
                jnp.where(frozen, 0, gy),
                ~frozen,
                lambda v: jax.jvp(box.x, (y,), (v,))[1],
                x,
                radius,
                config.rtol,
            )

        checked = code == PASSED
        no = jnp.asarray(False)
        # Only if some example's gradient test passed (not at the start, as a rule).
        n = y.shape[0]
        verified, step, saddle, matrix, g = gate(
            checked,
            check,
            (y, fy, radius),
            (no, jnp.zeros_like(y), no, jnp.zeros((n, n), y.dtype), jnp.zeros_like(y)),
        )
        retry = checked & ~verified
        # Only if some example failed the check. (Neither `check` nor `leave` holds a loop
        # of its own: a third level of while loops under vmap hung XLA's CPU runtime at
        # 2 10^4 customers, intermittently.)
        y, fy, gy, gx, residual, moved = gate(
            retry,
            leave,
            (y, fy, gy, gx, step, saddle, matrix, g, radius),
            (y, fy, gy, gx, jnp.zeros_like(fy), no),
        )
        code = jnp.where(checked, jnp.where(verified, 1, 0), code)
        code = jnp.where(moved, judged(y, fy, gy, gx, residual), code)
        # From a saddle, no lower point along negative curvature: flat to rounding there.
        code = jnp.where(retry & saddle & ~moved, 3, code)
        steps = steps + jnp.where(moved, 1, 0)
        # Out of steps with the check failed (or passed the gradient test again after its
        # step: the check is then not repeated): out of steps.
        out = (steps >= config.max_steps) & ((code == 0) | (code == PASSED))
        code = jnp.where(out, 2, code)
        hvps = hvps + jnp.where(checked, y.size, 0)
        return _Search(y, fy, gy, gx, radius, steps, hvps, code)

    def leave(operand):
        """The check's step, or the longest of 1/4, 1/16, ... (`SHORTER` in all) of it that is
        no worse: along negative curvature (from a saddle or a minimum of the score, the
        unit eigenvector of the lowest eigenvalue to the trust region's edge), lower f (one
        exists above rounding: the gradient there is at rounding level and the curvature
        negative beyond it); for a Newton step, f not higher beyond rounding (near the
        answer its decrease is at rounding level; the tests on gradients decide). Returns
        the new point's (y, f, gradient in y, gradient in x, KKT residual, whether it
        moved)."""
        y, fy, gy, gx, step, saddle, matrix, g, radius = operand
        step = jnp.where(saddle, radius * _descent(matrix, g), step)
        tried = jnp.isfinite(step).all()
        step = jnp.where(tried, step, 0)
        fractions = 0.25 ** jnp.arange(SHORTER, dtype=y.dtype)
        f_trials = jax.vmap(lambda t: f(y + t * step))(fractions)
        rounding = jnp.where(saddle, 0, 16 * eps * jnp.abs(fy))
        better = tried & ((f_trials < fy) | (~saddle & (f_trials <= fy + rounding)))  # NaN: no
        moved = better.any()
        y = jnp.where(moved, y + fractions[jnp.argmax(better)] * step, y)
        f_new, g_new, gx_new = evaluate(y)
        fy, gy, gx = (
            jnp.where(moved, f_new, fy),
            jnp.where(moved, g_new, gy),
            jnp.where(moved, gx_new, gx),
        )
        return y, fy, gy, gx, kkt(y, fy, gx), moved

    def cond(state):
        return state.code == 0

    def unfinished(state):
        return (state.code == 0) | (state.code == PASSED)

    def body(state):
        y, fy, gy, gx, radius, steps, hvps, _ = state
        frozen = held(y, gx)
        gy = jnp.where(frozen, 0, gy)
        hvp = hvp_at(y)

        y_scale = jnp.maximum(jnp.max(jnp.abs(y)), jnp.sqrt(x_scale))
        g_scale = jnp.maximum(jnp.abs(fy), f_scale) / y_scale
        p, cg_steps, _ = steihaug(hvp, gy, ~frozen, radius, g_scale)
        hp = jnp.where(frozen, 0, hvp(p))
        curvature = jnp.vdot(p, hp)
        predicted = -(jnp.vdot(gy, p) + 0.5 * jnp.where(jnp.isfinite(curvature), curvature, 0))
        # A non-finite step (a NaN score parameter makes the gradient NaN) is not tried: the
        # score is never evaluated at NaN amounts (a model's own domain check would raise
        # for the whole batch, throw=False or not).
        f_trial, g_trial, gx_trial = evaluate(jnp.where(jnp.isfinite(p).all(), y + p, y))
        ratio = (fy - f_trial) / jnp.where(predicted > 0, predicted, 1)
        # Near the optimum the predicted decrease falls below the rounding of f itself, and
        # the ratio is noise: there a step that does not raise f beyond rounding is taken
        # (the KKT test, on gradients, decides convergence), and the radius is kept.
        rounding = 16 * eps * jnp.abs(fy)
        in_noise = (predicted > 0) & (predicted <= rounding)
        accept = (
            jnp.isfinite(f_trial)
            & (predicted > 0)
            & ((ratio > 1e-4) | (in_noise & (f_trial <= fy + rounding)))
        )
        ratio = jnp.where(in_noise & accept, 0.5, ratio)
        p_norm = jnp.linalg.norm(p)
        radius = jnp.where(
            ~accept | (ratio < 0.25),
            0.25 * p_norm,
            jnp.where((ratio > 0.75) & (p_norm >= 0.99 * radius), 2 * radius, radius),
        )
        y, fy, gy, gx = (
            jnp.where(accept, y + p, y),
            jnp.where(accept, f_trial, fy),
            jnp.where(accept, g_trial, gy),
            jnp.where(accept, gx_trial, gx),
        )
        steps = steps + 1
        if config.callback is not None:
            jax.debug.callback(config.callback, steps, box.x(y), -fy)
        code = judged(y, fy, gy, gx, kkt(y, fy, gx))
        code = jnp.where((code == 0) & (radius <= 4 * eps * y_scale), 3, code)
        code = jnp.where((code == 0) & (steps >= config.max_steps), 2, code)
        return _Search(y, fy, gy, gx, radius, steps, hvps + cg_steps + 1, code)

    def judged(y, fy, gy, gx, residual):
        """0 (go on), `PASSED` (the gradient test: to be checked at the round's end) or 4."""
        ok = finite(y, fy, gy, gx)
        return jnp.where(ok, jnp.where(residual <= config.rtol, PASSED, 0), 4)

    def one_round(state):
        return verify(jax.lax.while_loop(cond, body, state))

    fy0, gy0, gx0 = evaluate(y0)
    radius0 = 0.1 * jnp.maximum(jnp.max(jnp.abs(y0)), jnp.sqrt(x_scale))
    code0 = judged(y0, fy0, gy0, gx0, kkt(y0, fy0, gx0))
    zero = jnp.asarray(0)
    start = _Search(y0, fy0, gy0, gx0, radius0, zero, zero, code0)
    # Rounds: the trust-region loop until every example's gradient test passes (or it
    # fails), then the second-order check once for all; those that fail it go on. Under
    # vmap the check runs once a round for the batch, not once a step.
    state = jax.lax.while_loop(unfinished, one_round, verify(start))
    y, fx, g, steps, hvps, code = state.y, state.fy, state.gx, state.steps, state.hvps, state.code
    x = box.x(y)
    # Amounts that the convergence test's projected step puts on a bound (the search in y
    # approaches such a bound but reaches it only in the limit) are put on it, where that does
    # not lower the score (an infinite slope at the bound, as flour^0.9 has, makes it higher).
    near, projected = _onto_bound(
        x,
        g,
        lower,
        upper,
        *scales(x, fx),
    )
    # ... and only those that the bound then holds (the gradient there pushes outward): a
    # tiny interior optimum, as butter's 3e-5, stays where it is.
    stays = ~_free(projected, jax.grad(f_x)(jnp.where(near, projected, x)), lower, upper)
    snapped = jnp.where(near & stays, projected, x)
    f_snapped = f_x(snapped)
    better = jnp.isfinite(f_snapped) & (f_snapped <= fx)
    x, fx = jnp.where(better, snapped, x), jnp.where(better, f_snapped, fx)
    g = jax.grad(f_x)(x)
    projected = jnp.max(jnp.abs(jnp.where(_free(x, g, lower, upper), g, 0)), initial=0)
    return x, fx, projected, steps, hvps, code


def _second_order(hvp, g, free, dx, x, radius, rtol):
    r"""The check once the gradient test has passed (up to `DENSE` amounts, once per round of
    the search, not per step): the Hessian $H$ of $f = -s$ in the search's variables, formed
    on the free set from Hessian-vector products.

    - *Converged to the answer's own scale*: $H_{FF}$ is positive definite
      (`_strict_maximum`'s Cholesky pivots) and the Newton step $\delta = -H_{FF}^{-1} g$,
      mapped to the amounts by `dx`, moves none by more than $\text{rtol}\cdot\|x\|_\infty$.
      That is the distance to the optimum relative to the answer wherever the search started
      (the gradient test's scales are floored at the start's, and a far start stopped at a
      score of $-2 \cdot 10^4$ where the optimum has $-1.4$). Where it moves more, the
      caller tries $\delta$ itself next. Amounts that the answer puts on a bound are held
      (the caller passes them as not `free`).
    - *Second order*: where that factorisation fails, $H_{FF} + 2\tau I$ is factorised
      ($\tau$ = `PIVOT` $n\,\varepsilon$ times the largest $|H_{ij}|$). If it succeeds,
      $H_{FF}$ is semidefinite to rounding (a flat direction: a line or valley of maxima) and
      $\delta$ is taken with it (long along any slope in a flat direction), judged as above.
      If it fails too, $H_{FF}$ has negative curvature beyond rounding: a saddle or a minimum
      of the score, where the gradient test alone stopped (e.g. a start at a stationary
      point). The caller then steps along the unit eigenvector of its lowest eigenvalue
      (`_descent`), to the trust region's edge.

    Returns (verified, the Newton step, whether the curvature is negative, the symmetric
    matrix factorised, the gradient on the free set)."""
    n = g.shape[0]
    eye = jnp.eye(n, dtype=g.dtype)
    hessian = jax.vmap(lambda v: hvp(jnp.where(free, v, 0)), out_axes=1)(eye)
    g = jnp.where(free, g, 0)
    factor, scale, definite = _strict_maximum(hessian, free)
    both = free[:, None] & free[None, :]
    matrix = jnp.where(both, (hessian + hessian.T) / 2, eye * scale)
    tau = PIVOT * n * jnp.finfo(g.dtype).eps * scale
    # Not positive definite: positive semidefinite to rounding if H + 2 tau I is (a flat
    # direction, a line or valley of maxima), its step then long along any slope there.
    lifted = jnp.linalg.cholesky(matrix + 2 * tau * eye)
    semidefinite = jnp.isfinite(lifted).all()
    factor = jnp.where(definite, factor, lifted)
    step = -jax.scipy.linalg.cho_solve((factor, True), g)

    saddle = ~definite & ~semidefinite
    moved = jnp.max(jnp.abs(dx(step)), initial=0)
    verified = ~saddle & jnp.isfinite(moved) & (moved <= rtol * jnp.max(jnp.abs(x), initial=0))
    return verified, step, saddle, matrix, g


def _descent(matrix, g):
    """The unit eigenvector of `matrix`'s lowest eigenvalue, signed to descend along `g`."""
    lowest = jnp.linalg.eigh(matrix)[1][:, 0]
    return jnp.where(jnp.vdot(lowest, g) > 0, -lowest, lowest)


class _Search(NamedTuple):
    """The trust-region search's state, in the variables of `_Box`."""

    y: Array
    fy: Array
    gy: Array
    gx: Array
    radius: Array
    steps: Array
    hvps: Array
    code: Array


#: How many of 1, 1/4, 1/16, ... of the second-order check's step `_solve` tries (the last
#: 4^-11, about 2e-7: where a step out of a saddle lowers f only below that, it stalls).
SHORTER = 12
#: `_solve`'s code for "the gradient test passed; the second-order check is next".
PASSED = 7

# The failure codes of `_solve` (1 is success).
_FAILURES = {
    2: RecipeResult.max_steps_reached,
    3: RecipeResult.stalled,
    4: RecipeResult.non_finite,
    5: RecipeResult.singular,
}


def _result(code) -> RecipeResult:
    result = RecipeResult.successful
    for k, failure in _FAILURES.items():
        result = RecipeResult.where(code == k, failure, result)
    return result


@eqx.filter_custom_jvp
def _optimum(score, x0, lower, upper, config):
    return _solve(score, x0, lower, upper, config)


# An eager call is compiled once per score structure (a module score's arrays are arguments),
# so it does not retrace the search. Under a transformation (the caller's jit, vmap, grad) the
# search is traced inline instead: a nested jit there cost optimise_recipes 1.5x per batch.
_compiled_optimum = bounded_jit(_optimum)


def _traced(*trees) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(trees))


#: Up to this many amounts the reduced Hessian is formed (one Hessian-vector product per
#: amount) and factorised; beyond, GMRES on Hessian-vector products.
DENSE = 256
#: Up to this many scalar parameters, the mixed derivative of the gradient with respect to
#: them is formed by forward mode (one Jacobian-vector product per parameter), so that
#: reverse mode never meets an infinite slope at a held bound (see `_mixed`).
MIXED = 256
#: `_strict_maximum`'s pivots must exceed PIVOT n eps times the reduced Hessian's largest entry.
PIVOT = 8


def _grad_f(score, x):
    return -jax.grad(score)(x)


def _mixed(score, t_score, x, free):
    r"""$(\partial_\theta \nabla f)\,\dot\theta$ on the free amounts, 0 on the held ones.

    An amount held at a bound where the score's slope is infinite (the course's
    $\text{flour}^{0.9}$ at 0) has infinite entries in $\partial_\theta \nabla f$. Forward
    mode drops them with the mask; reverse mode would transpose the product and meet
    $0 \cdot \infty$ (a NaN column of `jax.jacrev`). So for up to `MIXED` parameters the
    matrix is formed by forward mode, masked, and only then multiplied by $\dot\theta$: a
    product with a finite matrix, which transposes cleanly."""
    # Its differentiable leaves: inexact arrays, and Python floats (a traced float's primal).
    params, static = eqx.partition(
        score, lambda v: eqx.is_inexact_array(v) or isinstance(v, float | complex)
    )
    flat, unravel = ravel_pytree(params)
    if flat.size > MIXED or jnp.iscomplexobj(flat):
        _, b = eqx.filter_jvp(lambda s: _grad_f(s, x), (score,), (t_score,))
        return jnp.where(free, b, 0)
    # The tangents in the parameters' places; parameters without one contribute nothing.
    tangent_params = jax.tree_util.tree_map(
        lambda p, t: p if p is None else (jnp.zeros_like(p) if t is None else t),
        params,
        t_score,
        is_leaf=lambda v: v is None,
    )
    t_flat, _ = ravel_pytree(tangent_params)
    matrix = jax.jacfwd(lambda theta: _grad_f(eqx.combine(unravel(theta), static), x))(flat)
    matrix = jnp.where(free[:, None], matrix, 0)
    return matrix @ t_flat.astype(matrix.dtype)


def _strict_maximum(hessian, free):
    r"""The Cholesky factor of $H_{FF}$ (the Hessian of $f = -s$ on the free amounts; the
    identity, scaled to it, on the held ones), and whether it certifies a strict local
    maximum of $s$: every pivot finite and above `PIVOT` $n\,\varepsilon$ times the largest
    entry of $H_{FF}$, a condition number below about $1/(8 n \varepsilon)$ ($10^6/n$ in
    float32). A line or valley of maxima, or a saddle, is not certified, and has no
    derivative."""
    n = free.shape[0]
    both = free[:, None] & free[None, :]
    scale = jnp.max(jnp.where(both, jnp.abs(hessian), 0), initial=0)
    scale = jnp.where(scale > 0, scale, 1)
    matrix = jnp.where(both, (hessian + hessian.T) / 2, jnp.eye(n, dtype=hessian.dtype) * scale)
    factor = jnp.linalg.cholesky(matrix)
    pivots = jnp.diagonal(factor) ** 2
    # A singular H_FF's last pivot is rounding: a few epsilons of its largest entry.
    bound = PIVOT * n * jnp.finfo(hessian.dtype).eps * scale
    return factor, scale, jnp.isfinite(factor).all() & (jnp.min(pivots) > bound)


def _cholesky_solve(factor, matvec, b):
    del matvec  # the factorisation is the operator's
    return jax.scipy.linalg.cho_solve((factor, True), b)


def _gmres_solve(gmres, matvec, b):
    operator = lx.FunctionLinearOperator(matvec, jax.eval_shape(lambda: b))
    return lx.linear_solve(operator, b, gmres, throw=False).value


@_optimum.def_jvp
def _optimum_jvp(primals, tangents):
    score, x0, lower, upper, config = primals
    t_score = tangents[0]
    out = _optimum(score, x0, lower, upper, config)
    x, fx, pg, steps, hvps, code = out
    zeros = (jnp.zeros_like(x), jnp.zeros_like(fx), jnp.zeros_like(pg), None, None, None)
    if not jax.tree_util.tree_leaves(t_score):
        return out, zeros

    g = _grad_f(score, x)
    free = _free(x, g, lower, upper)
    # ∂_θ ∇f(x*, θ) θ̇, then H_FF ẋ_F = −(that)_F with ẋ_A = 0.
    rhs = -_mixed(score, t_score, x, free)

    def hvp(v):
        return jax.jvp(lambda y: _grad_f(score, y), (x,), (jnp.where(free, v, 0),))[1]

    if x.size <= DENSE:
        hessian = jax.vmap(hvp, out_axes=1)(jnp.eye(x.size, dtype=x.dtype))
        factor, scale, certified = _strict_maximum(hessian, free)

        solve = functools.partial(_cholesky_solve, factor)
    else:
        scale = jnp.asarray(1, x.dtype)
        rtol = 64 * float(jnp.finfo(x.dtype).eps)
        gmres = lx.GMRES(rtol=rtol, atol=0.0, restart=min(20, x.size), max_steps=4 * x.size)

        solve = functools.partial(_gmres_solve, gmres)
        operator = lx.FunctionLinearOperator(
            lambda v: jnp.where(free, hvp(v), v), jax.eval_shape(lambda: rhs)
        )
        certified = lx.linear_solve(operator, rhs, gmres, throw=False).result == (
            lx.RESULTS.successful
        )

    # No derivative where the optimum is not a strict local maximum (not isolated, or not a
    # maximum at all): an error, or NaN with throw=False (the result says why). The error is
    # raised from the primal (first, eagerly), and from the solve itself and its transpose, so
    # that it survives whichever of them the mode uses (under jit, a check on the primal alone
    # is dropped when only the derivative is kept).
    code = jnp.where((code == 1) & ~certified, 5, code)
    if config.throw:
        x = RecipeResult.singular.error_if(x, ~certified)

    def checked(matvec, b):
        t = solve(matvec, b)
        if config.throw:
            t = RecipeResult.singular.error_if(t, ~certified)
        return t * jnp.where(certified, 1, jnp.nan).astype(t.dtype)

    # The system H_FF ẋ_F = rhs_F, with the held amounts' rows the identity (times the
    # factorisation's scale): symmetric, so its own transpose.
    x_dot = jax.lax.custom_linear_solve(
        lambda v: jnp.where(free, hvp(v), scale * v), rhs, checked, checked, symmetric=True
    )
    x_dot = jnp.where(free, x_dot, 0)
    # The score's tangent at the optimum: ∂_θ s · θ̇ (the ∇_x s · ẋ term vanishes on the free
    # set and ẋ is zero on the active set).
    _, score_dot = eqx.filter_jvp(lambda s: s(x), (score,), (t_score,))
    return (x, fx, pg, steps, hvps, code), (x_dot, -score_dot, jnp.zeros_like(pg), None, None, None)


def _bounds(name, value, x0):
    if value is None:
        return jnp.full(x0.shape, jnp.inf if name == "upper" else -jnp.inf, x0.dtype)
    array = jnp.asarray(value)
    if not jnp.issubdtype(array.dtype, jnp.floating) and not jnp.issubdtype(
        array.dtype, jnp.integer
    ):
        raise TypeError(f"optimise_recipe: {name} must be real numbers, got {array.dtype}.")
    if array.shape not in ((), x0.shape):
        raise ValueError(
            f"optimise_recipe: {name} must be a number or of the recipe's shape "
            f"{x0.shape}, got shape {array.shape}."
        )
    return jnp.broadcast_to(array.astype(x0.dtype), x0.shape)


def _only_lower(lower, upper) -> bool:
    """Whether the arguments say, before they are traced, that every amount has a finite
    lower bound and none an upper one (the default: amounts >= 0)."""
    if upper is not None and not (isinstance(upper, float) and upper == math.inf):
        return False
    if isinstance(lower, int | float) and not isinstance(lower, bool):
        return math.isfinite(lower)
    return isinstance(lower, np.ndarray) and bool(np.isfinite(lower).all())


def optimise_recipe(
    score: Callable[[Float[Array, " n"]], Float[Array, ""]],
    x0: Float[ArrayLike, " n"],
    *,
    lower: Float[ArrayLike, "..."] | float | None = 0.0,
    upper: Float[ArrayLike, "..."] | float | None = None,
    rtol: float | None = None,
    max_steps: int = 200,
    throw: bool = True,
    callback: Callable[[Any, Any, Any], Any] | None = None,
) -> RecipeSolution:
    r"""Maximises `score` over ingredient amounts in $[l, u]$ from `x0` (see the module's
    docstring for the method, its stopping rule and its derivatives).

    **Arguments:**

    - `score`: any cakejax score (`cj.Deliciousness()`), user callable or Equinox module
      mapping a vector of amounts to a scalar. Its inexact array leaves are parameters the
      optimum can be differentiated with respect to.
    - `x0`: the starting recipe, within the bounds (checked: nothing is clipped silently).
    - `lower`, `upper`: bounds, numbers or arrays of the recipe's shape (default: amounts
      $\ge 0$, no upper bound; a pantry is an upper bound); `None` or $\mp\infty$ for no
      bound, per amount too (NaN is refused).
    - `rtol`: the first-order (KKT) tolerance, relative (default $10^{-4}$ in float32,
      $10^{-8}$ in float64).
    - `max_steps`: trust-region iterations at most.
    - `throw`: raise `equinox.EquinoxRuntimeError` when it does not converge (eagerly and
      under `eqx.filter_jit`), or report it in `result`.
    - `callback`: called on the host after every step as `callback(step, recipe, score)`
      (through `jax.debug.callback`), e.g. to draw a progress bar or record the path. An
      exception it raises ends the solve and is raised again as itself (inside an outer
      `jax.jit`, as XLA's error when that program runs).

    **Returns:** a `RecipeSolution`. Works under `jax.jit` and `jax.vmap` (one recipe per
    customer: vmap over the score's parameters and/or `x0`).
    """
    x0 = jnp.asarray(x0)
    if not jnp.issubdtype(x0.dtype, jnp.floating) or x0.ndim != 1:
        raise TypeError(
            f"optimise_recipe: x0 must be a 1-d array of floats (one amount per "
            f"ingredient), got {x0.dtype}{list(x0.shape)}."
        )
    if x0.size == 0:
        raise ValueError(
            "optimise_recipe: x0 is empty (no ingredients), so there is nothing to optimise: "
            "give one starting amount per ingredient."
        )
    sides = "lower" if _only_lower(lower, upper) else "mixed"
    lower, upper = _bounds("lower", lower, x0), _bounds("upper", upper, x0)
    out = jax.eval_shape(score, x0)
    if not (hasattr(out, "shape") and out.shape == () and jnp.issubdtype(out.dtype, jnp.floating)):
        raise TypeError(
            f"optimise_recipe: score must return a real scalar, got {describe_tree(out)}."
        )
    max_steps = count("optimise_recipe", "max_steps", max_steps)
    if rtol is None:
        rtol = 1e-8 if x0.dtype == jnp.float64 else 1e-4
    rtol = tolerance("optimise_recipe", "rtol", rtol, positive=True, below=1)
    if not isinstance(throw, bool | np.bool_):
        raise TypeError(f"optimise_recipe: throw must be True or False, got {describe(throw)}.")
    x0 = eqx.error_if(
        x0,
        jnp.any(jnp.isnan(lower) | jnp.isnan(upper)),
        "optimise_recipe: a bound is NaN (give -inf or inf, or None, for no bound)",
    )
    x0 = eqx.error_if(
        x0, jnp.any(lower > upper), "optimise_recipe: a lower bound is above its upper bound"
    )
    x0 = eqx.error_if(
        x0,
        ~jnp.all(jnp.isfinite(x0)),
        "optimise_recipe: the starting recipe x0 has NaN or infinite amounts",
    )
    x0 = eqx.error_if(
        x0,
        jnp.any((x0 < lower) | (x0 > upper)),
        "optimise_recipe: the starting recipe x0 is outside the bounds (e.g. a "
        "negative amount); it is not clipped silently: start inside them",
    )
    # A score closing over traced parameters (a lambda of the θ being differentiated): those
    # become its leaves, differentiated through the optimum like a module's.
    score = close_over_tracers(score, x0)
    traced = _traced(score, x0, lower, upper)
    config = _Config(
        float(rtol), max_steps, throw, None if callback is None else _Callback(callback), sides
    )
    if traced or callback is None:
        x, fx, pg, steps, hvps, code = (_optimum if traced else _compiled_optimum)(
            score, x0, lower, upper, config
        )
    else:
        del _RAISED[:]
        try:
            x, fx, pg, steps, hvps, code = jax.block_until_ready(
                _compiled_optimum(score, x0, lower, upper, config)
            )
        except jax.errors.JaxRuntimeError:
            if not _RAISED:
                raise
            error = _RAISED.pop()
            error.add_note("(raised by the callback given to optimise_recipe)")
            raise error from None
    result = _result(code)
    if throw:
        x = result.error_if(x, result != RecipeResult.successful)
    return RecipeSolution(x, -fx, pg, steps, steps + 2, hvps, result)
