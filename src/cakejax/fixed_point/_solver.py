"""The interface every forward solver implements; the loop around it is in `_loop.py`."""

import abc
from collections.abc import Callable
from typing import Any

from jaxtyping import Array, Float

from .._arguments import Checked


Vector = Float[Array, " n"]


class AbstractFixedPointSolver(Checked):
    r"""A forward solver for $x = f(x)$ on a flat state vector.

    A solver only proposes the next iterate; the shared loop (`_loop.iterate`) evaluates
    $f$ there, measures the residual $f(x) - x$, and decides convergence, stalls, cycles and
    divergence the same way for every solver. Subclasses implement:

    - `init(f, x, fx)`: the solver's own state, given $x_0$ and $f(x_0)$;
    - `step(f, x, fx, state)`: the next iterate and the new state;

    and may override `advice(outcome)`, what to try when a solve with this solver ends in
    `outcome` (a `FixedPointResult` name), appended to the error message.
    """

    def advice(self, outcome: str) -> str:
        """A suggestion appended to the message of `outcome`; none by default."""
        return ""

    def plain_damping(self, x: Vector) -> float | None:
        """If not `None`, the loop first takes damped Picard steps with this damping while
        they contract fast, and calls `init` only where they stop (see `_loop`)."""
        return None

    @abc.abstractmethod
    def init(self, f: Callable[[Vector], Vector], x: Vector, fx: Vector) -> Any:
        """The solver's state at $x_0$."""

    @abc.abstractmethod
    def step(
        self, f: Callable[[Vector], Vector], x: Vector, fx: Vector, state: Any
    ) -> tuple[Vector, Any]:
        """The next iterate, and the solver's new state."""
