r"""Matrix-free solves of the derivative's linear system $(I - J)\,t = b$ (and its
transpose), where $J = \partial f/\partial x$ at the fixed point is only available through
Jacobian-vector (or vector-Jacobian) products.

**Scale invariance.** The right-hand side is divided by $\|b\|_\infty$ before solving and the
solution multiplied back, so the tolerance is relative to $b$ whatever its units: a loss
scaled by $10^{-12}$ or $10^{12}$ gets the same relative accuracy (a tolerance measured in the
cotangent's own units made gradients of small losses silently wrong). A zero right-hand side
gives exactly zero.

**Success of a Krylov solve is judged on the true residual**
$\|b - (I - J)\,t\|_\infty / \|b\|_\infty$, recomputed with one more product: at most
`2 * rtol`, or at the floating-point floor of the forward loop (a float32 solve at condition
number $10^3$ cannot reach `1e-6`, so the tolerance is at least `KRYLOV_FLOOR_ULPS` machine
epsilons). The Neumann iteration uses the forward loop's own rules.
"""

import math
from collections.abc import Callable
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import lineax as lx
from jaxtyping import Array, Bool, Float, Int

from ._loop import floor_tolerance, norm
from ._solver import Vector


LinearMethod = Literal["gmres", "neumann"]
#: The smallest relative tolerance asked of a linear solve, in machine epsilons: about 1.5e-5
#: in float32, 2.8e-14 in float64.
KRYLOV_FLOOR_ULPS = 128


class LinearSolve(NamedTuple):
    """A solution `value`, the iterations taken (GMRES: restart cycles), whether it is
    accurate (`ok`) and its true relative residual."""

    value: Vector
    steps: Int[Array, ""]
    ok: Bool[Array, ""]
    residual: Float[Array, ""]


def solve_linear(
    method: LinearMethod,
    matvec: Callable[[Vector], Vector],
    b: Vector,
    *,
    rtol: float,
    max_steps: int,
    restart: int = 20,
    slowest: float = math.inf,
    start: Bool[Array, ""] | bool = True,
) -> LinearSolve:
    r"""Solves `matvec(t) = b` for $t$.

    - `"gmres"`: lineax's restarted GMRES on a `FunctionLinearOperator`; any nonsingular
      $I - J$ (repelling fixed points too); `max_steps` bounds the products.
    - `"neumann"`: the Neumann series $t = \sum_i J^i b$ (`_neumann`): one product an
      iteration and no memory, but only for $\rho(J) < 1$ and slow as $\rho(J) \to 1$. It
      gives up (not `ok`) once its terms shrink by less than `slowest` a step (over two
      steps); `start=False` (per example under `vmap`) skips it.
    """
    scale = norm(b)
    unit = b / jnp.where(scale > 0, scale, 1)
    # Krylov residuals stall at a few hundred epsilons; asking for less wastes restarts.
    rtol = max(rtol, KRYLOV_FLOOR_ULPS * float(jnp.finfo(b.dtype).eps))
    neumann = None  # the Neumann iteration's verdict
    if method == "neumann":
        t, steps, neumann = _neumann(matvec, unit, rtol, max_steps, slowest, start)
    else:
        operator = lx.FunctionLinearOperator(matvec, jax.eval_shape(lambda: unit))
        restart = min(restart, unit.size)
        solver = lx.GMRES(
            rtol=rtol,
            atol=rtol,
            restart=restart,
            stagnation_iters=3,
            max_steps=max(1, math.ceil(max_steps / restart)),
        )
        solution = lx.linear_solve(operator, unit, solver, throw=False)
        t, steps = solution.value, solution.stats["num_steps"]
    residual = norm(unit - matvec(t))
    ok = residual <= max(2 * rtol, floor_tolerance(residual.dtype))
    if neumann is not None:
        ok = ok & neumann
    ok = (ok & jnp.isfinite(t).all()) | (scale == 0)
    # A zero right-hand side has the solution zero (given a nonsingular system, which
    # `Implicit` certifies separately); a Krylov method can break down on it.
    t = jnp.where(scale > 0, t * scale, 0)
    return LinearSolve(t, jnp.asarray(steps), ok, jnp.where(scale > 0, residual, 0))


class _Series(NamedTuple):
    k: Int[Array, ""]
    t: Vector  # the partial sum of J^i b
    r: Vector  # the next term, J^k b: the residual of t
    size: Float[Array, ""]  # max|r|
    size_prev: Float[Array, ""]  # the last term's
    running: Bool[Array, ""]
    converged: Bool[Array, ""]


def _neumann(matvec, b, rtol, max_steps, slowest, start):
    r"""The partial sums $t_k = \sum_{i < k} J^i b$ of the Neumann series of $(I - J)^{-1} b$
    ($\|b\|_\infty = 1$), with $J v = v - $ `matvec(v)`. Their residual is the next term,
    $b - (I - J)\,t_k = J^k b =: r_k$, so each step is one product, $r_{k+1} = J r_k$.

    The rate $q$ estimates $\rho(J)$: the larger of the last step's $\|r_{k+1}\| /
    \|r_k\|$ and the last two steps' geometric mean (a pair of eigenvalues $\pm\lambda$
    makes the one-step ratio alternate, 0.66 then 0.91 at $\rho = 0.9$). The remaining
    error $\sum_{i > k} J^i b$ is about $\|r_{k+1}\|\, / (1 - q)$: the series stops when that
    is at most `rtol`, or gives up when the two-step rate exceeds `slowest` (or a term is not
    finite, or after `max_steps` products). The caller recomputes the true residual of $t$.
    Returns the sum, the products taken and whether it converged."""

    def product(v):
        return v - matvec(v)

    def cond(c: _Series):
        return c.running

    def body(c: _Series):
        t = c.t + c.r
        r = product(c.r)
        size = norm(r)
        one = size / jnp.where(c.size > 0, c.size, 1)
        two = jnp.sqrt(size / jnp.where(c.size_prev > 0, c.size_prev, 1))
        two = jnp.where(c.k >= 2, two, one)
        rate = jnp.maximum(one, two)
        converged = (rate < 1) & (size <= rtol * (1 - rate))
        k = c.k + 1
        running = ~converged & ~(two > slowest) & jnp.isfinite(size) & (k < max_steps)
        return _Series(k, t, r, size, c.size, running, converged)

    r0 = product(b)
    size0 = norm(r0)
    start = jnp.asarray(start)
    c = jax.lax.while_loop(
        cond,
        body,
        _Series(
            jnp.asarray(1),
            b,
            r0,
            size0,
            jnp.asarray(1, size0.dtype),
            start & jnp.isfinite(size0) & (size0 > 0),
            start & (size0 == 0),
        ),
    )
    return c.t + c.r, c.k, c.converged
