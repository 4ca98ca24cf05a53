r"""Picard (fixed-point) iteration, optionally damped."""

from collections.abc import Callable

import equinox as eqx

from .._arguments import tolerance
from .._typing import static_float
from ._solver import AbstractFixedPointSolver, Vector


class Picard(AbstractFixedPointSolver):
    r"""Picard iteration $x_{k+1} = (1 - \beta)\,x_k + \beta\,f(x_k)$.

    Converges linearly, at the rate of the contraction $\rho = \|\partial f/\partial x\|$
    (with damping, at the rate of $(1-\beta) I + \beta\,\partial f/\partial x$): about
    $\log(\text{rtol}) / \log\rho$ steps, which is thousands at $\rho = 0.999$. One
    evaluation of $f$ a step and no memory. Damping ($\beta < 1$) makes maps with slopes near
    $-1$ converge; it cannot find repelling fixed points (use `Newton`).

    **Arguments:**

    - `damping`: $\beta \in (0, 1]$, default 1 (plain iteration).
    """

    damping: float = eqx.field(
        default=1.0, static=True, converter=static_float("Picard", "damping")
    )

    def check(self):
        tolerance("Picard", "damping", self.damping, positive=True, at_most=1)

    def advice(self, outcome: str) -> str:
        return {
            "max_steps_reached": " cj.Anderson() needs far fewer steps on weak contractions.",
            "diverged": (
                " Picard iteration finds attracting fixed points only: cj.Newton() finds "
                "repelling ones too, and damping (cj.Picard(0.5)) helps where fn's slope is "
                "below -1."
            ),
            "oscillating": " Damping (cj.Picard(0.5)) or cj.Newton() converge where this cycles.",
        }.get(outcome, "")

    def init(self, f: Callable[[Vector], Vector], x: Vector, fx: Vector) -> None:
        return None

    def step(self, f: Callable[[Vector], Vector], x: Vector, fx: Vector, state: None):
        if self.damping == 1.0:
            return fx, state
        return x + self.damping * (fx - x), state
