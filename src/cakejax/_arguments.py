"""The checks of counts and tolerances, in one place: every public function and solver that
takes a number of steps, an order, a size or a tolerance checks it here, so that each one
rejects the same things with the same kind of message.

A **count** (`count`) is a Python `int` or a concrete NumPy/JAX integer scalar, at least
`minimum`. A `bool` is refused (`True` would silently be 1), as is a float, even an integral
one (`2.0` steps is a sign of a mix-up, and `1e5` should be written `100_000`), a string and a
traced value (a count fixes the shape of a program, so it cannot be traced).

A **tolerance** (`tolerance`) is a real number (a Python `int` or `float`, or a concrete real
scalar) that is finite and `>= 0` (`> 0` with `positive=True`; `< below` or `<= at_most`
where given: a damping factor is a tolerance in this sense, in (0, 1]). A
`bool`, a string, a complex number, NaN and infinities are refused: a negative or NaN
tolerance makes every comparison false, which would read as "never converged" or "always
within tolerance" without a word.

Each raises `TypeError` for a value of the wrong kind and `ValueError` for one of the right
kind out of range, with a message that names the function (or model) and the argument, says
what was expected and what was given, and what to pass instead.
"""

import math

import equinox as eqx
import jax
import jax.core  # for jax.core.Tracer (named, so that type checkers see it)
import numpy as np

from ._typing import describe


def _traced(owner: str, name: str, value, what: str) -> TypeError:
    return TypeError(
        f"{owner}: {name} must be a concrete {what}, got a traced value ({describe(value)}, "
        f"e.g. an argument of a jitted function): it fixes the program's shape. Pass a Python "
        f"number, or mark the argument static (`jax.jit(..., static_argnames=...)`)."
    )


def count(owner: str, name: str, value, *, minimum: int = 1) -> int:
    """`value` as an `int`, checked as the module's docstring says: an int `>= minimum`."""
    if isinstance(value, jax.core.Tracer):
        raise _traced(owner, name, value, "int")
    integral = isinstance(value, int | np.integer) or (
        hasattr(value, "dtype") and np.shape(value) == () and np.dtype(value.dtype).kind in "iu"
    )
    if isinstance(value, bool | np.bool_) or not integral:
        raise TypeError(
            f"{owner}: {name} must be an int >= {minimum}, got {describe(value)}; pass a "
            f"Python int (a float such as 1e5 written as 100_000)."
        )
    value = int(value)
    if value < minimum:
        raise ValueError(f"{owner}: {name} must be an int >= {minimum}, got {value}.")
    return value


def tolerance(
    owner: str,
    name: str,
    value,
    *,
    positive: bool = False,
    below: float | int | None = None,
    at_most: float | int | None = None,
) -> float:
    """`value` as a `float`, checked as the module's docstring says: real, finite, `>= 0`
    (`> 0` if `positive`), and `< below` or `<= at_most` where given."""
    if isinstance(value, jax.core.Tracer):
        raise _traced(owner, name, value, "number")
    real = isinstance(value, int | float | np.integer | np.floating) or (
        hasattr(value, "dtype") and np.shape(value) == () and np.dtype(value.dtype).kind in "iuf"
    )
    expected = (
        f"a finite number {'>' if positive else '>='} 0"
        + (f" and < {below:g}" if below is not None else "")
        + (f" and <= {at_most:g}" if at_most is not None else "")
    )
    if isinstance(value, bool | np.bool_) or not real:
        raise TypeError(f"{owner}: {name} must be {expected}, got {describe(value)}.")
    value = float(value)
    if (
        not (math.isfinite(value) and (value > 0 if positive else value >= 0))
        or (below is not None and not value < below)
        or (at_most is not None and not value <= at_most)
    ):
        raise ValueError(f"{owner}: {name} must be {expected}, got {value!r}.")
    return value


class Checked(eqx.Module):
    """An `eqx.Module` whose fields `check` validates: at construction, and again wherever
    the module is used (a `FixedPoint` checks its solver and adjoint at each solve), since
    `eqx.tree_at` or a loaded checkpoint changes fields without constructing anew."""

    def __check_init__(self):
        self.check()

    def check(self) -> None:
        """Raises `TypeError`/`ValueError` naming the field if one is invalid (nothing to
        check by default)."""
