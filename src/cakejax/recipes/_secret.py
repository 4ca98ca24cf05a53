"""Part 4 of the course, "Secret Family Recipes": the dough-maturation process."""

import equinox as eqx
from jaxtyping import Array, ArrayLike, Float

from .._typing import as_float, as_float_array, PyInt, Scalar, TypedModule


class DoughMaturity(TypedModule):
    r"""One hour of sourdough maturation: $m \mapsto a\,m + b$, with retention $a$ (how much
    maturity is kept) and boost $b$. For $|a| < 1$ its fixed point, the final maturity, is
    $m^\star = b / (1 - a)$, with $\partial m^\star/\partial a = b/(1-a)^2$ and
    $\partial m^\star/\partial b = 1/(1-a)$: the course's $(0.75, 10)$ gives 40 and
    $(160, 4)$. Use it with `FixedPoint`.

    **Fields:** `retention` $a$ and `boost` $b$, learnable scalar arrays.
    """

    retention: Scalar = eqx.field(converter=as_float_array)
    boost: Scalar = eqx.field(converter=as_float_array)

    def __call__(self, maturity: Float[ArrayLike, "*shape"] | PyInt) -> Float[Array, "*shape"]:
        """**Arguments:** the maturity, any shape. **Returns:** the maturity an hour later.

        It is not checked for finiteness here: `FixedPoint`, which calls it at every
        iteration, checks its iterates and their residuals itself."""
        self.check_fields()
        return self.retention * as_float(maturity) + self.boost
