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

from ._loop import floor_tolerance, iterate, norm
from ._picard import Picard
from ._results import converged
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
) -> LinearSolve:
    r"""Solves `matvec(t) = b` for $t$.

    - `"gmres"`: lineax's restarted GMRES on a `FunctionLinearOperator`; any nonsingular
      $I - J$ (repelling fixed points too); `max_steps` bounds the products.
    - `"neumann"`: the Richardson iteration $t \leftarrow b + J t$ (the Neumann series
      $\sum_i J^i b$): one product an iteration and no memory, but only for $\rho(J) < 1$ and
      slow as $\rho(J) \to 1$. It runs in the forward loop, floor detection included.
    """
    scale = norm(b)
    unit = b / jnp.where(scale > 0, scale, 1)
    # Krylov residuals stall at a few hundred epsilons; asking for less wastes restarts.
    rtol = max(rtol, KRYLOV_FLOOR_ULPS * float(jnp.finfo(b.dtype).eps))
    forward = None  # the Neumann iteration's loop, which judges its own convergence
    if method == "neumann":
        forward = iterate(Picard(), lambda t: unit + t - matvec(t), unit, rtol, 0.0, max_steps)
        t, steps = forward.value, forward.steps
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
    if forward is not None:
        ok = converged(forward.result)
    else:
        ok = residual <= max(2 * rtol, floor_tolerance(residual.dtype))
    ok = (ok & jnp.isfinite(t).all()) | (scale == 0)
    # A zero right-hand side has the solution zero (given a nonsingular system, which
    # `Implicit` certifies separately); a Krylov method can break down on it.
    t = jnp.where(scale > 0, t * scale, 0)
    return LinearSolve(t, jnp.asarray(steps), ok, jnp.where(scale > 0, residual, 0))
