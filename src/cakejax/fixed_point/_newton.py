r"""Newton–Krylov: Newton's method on $g(x) = f(x) - x$, each step a matrix-free GMRES solve."""

from collections.abc import Callable

import equinox as eqx
import jax

from .._arguments import count, tolerance
from .._typing import static_float
from ._linear import solve_linear
from ._solver import AbstractFixedPointSolver, Vector


class Newton(AbstractFixedPointSolver):
    r"""Newton's method for $g(x) = f(x) - x = 0$: $x_{k+1} = x_k + \delta$ with
    $(I - \partial f/\partial x)\,\delta = f(x_k) - x_k$, the linear system solved matrix-free by
    GMRES (Jacobian-vector products of $f$, never a Jacobian).

    Converges quadratically near a fixed point where $I - \partial f/\partial x$ is
    nonsingular, whether that fixed point attracts or repels: it finds the repelling fixed
    point of $m \mapsto 1.5\,m + 10$ ($-20$) that Picard and Anderson iterations run away
    from. Each step costs one linearisation of $f$ and up to `linear_steps` products; far from
    a fixed point it can overshoot (no line search), which the loop reports as divergence.

    **Arguments:**

    - `linear_rtol`: relative tolerance of each step's GMRES solve (default `1e-5`; an inexact
      Newton step, enough for fast convergence, tighter costs more products).
    - `linear_steps`: the most products per step (default 200).
    """

    linear_rtol: float = eqx.field(
        default=1e-5, static=True, converter=static_float("Newton", "linear_rtol")
    )
    linear_steps: int = eqx.field(default=200, static=True)

    def check(self):
        tolerance("Newton", "linear_rtol", self.linear_rtol, positive=True, below=1)
        count("Newton", "linear_steps", self.linear_steps)

    def advice(self, outcome: str) -> str:
        return {
            "max_steps_reached": " Start nearer the fixed point.",
            "diverged": (
                " Newton's method found no fixed point from x0: fn may have none, or x0 is "
                "too far from one (Newton takes full steps, with no line search)."
            ),
        }.get(outcome, "")

    def init(self, f: Callable[[Vector], Vector], x: Vector, fx: Vector) -> None:
        return None

    def step(self, f: Callable[[Vector], Vector], x: Vector, fx: Vector, state: None):
        _, jvp = jax.linearize(f, x)
        delta = solve_linear(
            "gmres",
            lambda v: v - jvp(v),
            fx - x,
            rtol=self.linear_rtol,
            max_steps=self.linear_steps,
        )
        return x + delta.value, state
