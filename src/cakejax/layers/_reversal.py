r"""Gradient reversal (domain-adversarial training) as a layer."""

import equinox as eqx
from jaxtyping import Array, ArrayLike, Inexact

from .._typing import as_float, PyInt, static_float, TypedModule
from ._scale import scale_gradient


class GradientReversal(TypedModule):
    r"""The gradient reversal layer of domain-adversarial training (Ganin & Lempitsky, 2015):
    $y = x$ going forward, $\bar x = -\lambda\,\bar y$ going backward. Put between a feature
    extractor and a domain classifier: the classifier learns to tell the domains apart while
    the features are pushed to make that impossible.

    It is `GradientScale(-scale)`: the tangent map $\dot x \mapsto -\lambda\,\dot x$ is linear,
    so forward mode (`jvp`, `jacfwd`) gives $-\lambda$ too, and every transform works. Second
    derivatives through it are scaled by $\lambda^2$ (not reversed). For the usual schedule
    $\lambda_p = 2/(1 + e^{-10p}) - 1$, call `cakejax.scale_gradient(x, -lam)` with a traced
    `lam` rather than rebuilding the layer, which would recompile.

    **Fields:**

    - `scale`: $\lambda$ (default 1), a finite real number (static).
    """

    scale: float = eqx.field(
        default=1.0, static=True, converter=static_float("GradientReversal", "scale")
    )

    def _check_values(self):
        if not abs(self.scale) < float("inf"):
            raise ValueError(f"GradientReversal: field 'scale' must be finite, got {self.scale}.")

    def __call__(self, x: Inexact[ArrayLike, "*shape"] | PyInt) -> Inexact[Array, "*shape"]:
        """**Arguments:** `x`, any shape. **Returns:** `x`."""
        return scale_gradient(as_float(x), -self.scale)
