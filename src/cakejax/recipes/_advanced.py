"""Part 2 of the course, "Advanced Baking": the cake's properties as a function of its
ingredients, a deliciousness score over them, a fluffiness loss with and without
`stop_gradient`, and a per-customer sweetness error."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._checks import checked
from .._typing import (
    as_float,
    as_float_array,
    Ingredients,
    Properties,
    Scalar,
    ScalarLike,
    TypedModule,
)


#: The course's ingredients, in the order of an ingredients vector (alphabetical, as the course
#: builds it with `sorted`).
INGREDIENTS = ("butter", "eggs", "flour", "sugar")
#: The cake properties `CakeProperties` returns, in order.
PROPERTIES = ("sweetness", "fluffiness", "cost")


def ingredients(
    *, butter: ScalarLike, eggs: ScalarLike, flour: ScalarLike, sugar: ScalarLike
) -> Float[Array, "4"]:
    """The ingredients vector `[butter, eggs, flour, sugar]` (the order of `INGREDIENTS`), in
    JAX's default float dtype. The course's cake is
    `ingredients(butter=1.0, eggs=3.0, flour=2.0, sugar=1.5)`."""
    dtype = jnp.result_type(float)
    return jnp.stack([as_float(a).astype(dtype) for a in (butter, eggs, flour, sugar)])


def _field(default):
    """An array field with a Python default, converted to an array at construction so that it
    takes the float dtype in force then (float32, or float64 under `jax_enable_x64`)."""
    return eqx.field(default=default, converter=as_float_array)


def _dot4(w: Float[Array | np.ndarray, "4"], x: tuple[Scalar, Scalar, Scalar, Scalar]) -> Scalar:
    """$w \\cdot x$ written out term by term, `x` already split into its four amounts (see
    `CakeProperties._amounts` for why)."""
    return (w[0] * x[0] + w[1] * x[1]) + (w[2] * x[2] + w[3] * x[3])


class CakeProperties(TypedModule):
    r"""The cake's properties from its ingredients $x = (x_\text{butter}, x_\text{eggs},
    x_\text{flour}, x_\text{sugar})$, all amounts $\ge 0$:

    $$\begin{aligned}
    \text{sweetness} &= s\,\log(1 + x_\text{sugar}) + w_s \cdot x \\
    \text{fluffiness} &= w_f \cdot x - p\,(x_\text{flour} - x^\star_\text{flour})^2 \\
    \text{cost} &= c \sum_i x_i^{e_i}
    \end{aligned}$$

    Every coefficient is an array field, so the model can be fitted with gradients. The
    defaults are the course's `bake_cake_properties`: $s = 10$, $w_s = (0.1, 0, -0.2, 0)$,
    $w_f = (0.2, 5/3, 0, 0)$, $p = 0.5$, $x^\star_\text{flour} = 2$,
    $e = (1.2, 1, 0.9, 1.1)$, $c = 0.5$.

    A negative, NaN or infinite amount is an error (`eqx.error_if`, also under `jax.jit`,
    `vmap` and every derivative): the logarithm and the fractional powers are not real there.
    Under `EQX_ON_ERROR=nan` (read when the model is traced) such a cake's properties and their
    derivatives are NaN instead, and the other cakes of a batch are unaffected.

    `sweetness`, `fluffiness` and `cost` compute one property each (a model that needs one
    should call its method: see `sweetness`).
    """

    sugar_sweetness: Scalar = _field(10.0)
    sweetness_weights: Float[Array, "4"] = _field((0.1, 0.0, -0.2, 0.0))
    fluffiness_weights: Float[Array, "4"] = _field((0.2, 5.0 / 3.0, 0.0, 0.0))
    flour_penalty: Scalar = _field(0.5)
    ideal_flour: Scalar = _field(2.0)
    cost_exponents: Float[Array, "4"] = _field((1.2, 1.0, 0.9, 1.1))
    cost_scale: Scalar = _field(0.5)

    def __call__(self, ingredients: Ingredients) -> Properties:
        """**Arguments:** `ingredients`, the amounts in the order of `INGREDIENTS`.
        **Returns:** `[sweetness, fluffiness, cost]` (the order of `PROPERTIES`)."""
        self.check_fields()
        amounts = self._amounts(ingredients)
        return jnp.stack([self._sweetness(amounts), self._fluffiness(amounts), self._cost(amounts)])

    def sweetness(self, ingredients: Ingredients) -> Scalar:
        """The sweetness alone. A model that needs one property calls its method rather than
        indexing `__call__`'s vector: under reverse mode the properties it does not use would
        still be differentiated, against a zero cotangent (the cost's powers alone made a
        batched `FluffinessLoss` gradient about ten times slower). A model that uses all three
        (`Deliciousness`) unpacks `__call__`'s vector: on a batch XLA fuses that gradient
        better than one built from the three methods."""
        self.check_fields()
        return self._sweetness(self._amounts(ingredients))

    def fluffiness(self, ingredients: Ingredients) -> Scalar:
        """The fluffiness alone (see `sweetness`)."""
        self.check_fields()
        return self._fluffiness(self._amounts(ingredients))

    def cost(self, ingredients: Ingredients) -> Scalar:
        """The cost alone (see `sweetness`)."""
        self.check_fields()
        return self._cost(self._amounts(ingredients))

    def _amounts(self, ingredients):
        # The domain check, then each amount sliced out once: under reverse mode every slice
        # of a batch becomes a scatter of its cotangent into a (batch, 4) array, so slicing a
        # column per use would multiply those scatters. And every weighted sum below is written
        # out term by term over the four amounts: under `jax.vmap` each term is then an
        # elementwise operation on a column of the batch, as in the course's own expressions,
        # where a `jnp.sum(w * x)` or `w @ x` would reduce over a minor axis of length 4, which
        # XLA runs about 4x slower on a batch of 10^6 cakes.
        x = jnp.asarray(ingredients)
        amounts = tuple(x[i] for i in range(4))
        ok = [(a >= 0) & (a < jnp.inf) for a in amounts]
        return checked(
            amounts,
            ~((ok[0] & ok[1]) & (ok[2] & ok[3])),
            "CakeProperties: ingredient amounts must be finite and non-negative",
        )

    def _sweetness(self, amounts):
        return self.sugar_sweetness * jnp.log1p(amounts[3]) + _dot4(self.sweetness_weights, amounts)

    def _fluffiness(self, amounts):
        return (
            _dot4(self.fluffiness_weights, amounts)
            - self.flour_penalty * (amounts[2] - self.ideal_flour) ** 2
        )

    def _cost(self, amounts):
        butter, eggs, flour, sugar = amounts
        e = self.cost_exponents
        return self.cost_scale * ((butter ** e[0] + eggs ** e[1]) + (flour ** e[2] + sugar ** e[3]))


class Deliciousness(TypedModule):
    r"""The course's overall score of a cake:
    $-(\text{sweetness} - S)^2 - (\text{fluffiness} - F)^2 - \lambda\,\text{cost}$.

    **Fields:**

    - `properties`: the `CakeProperties` the score is computed from.
    - `ideal_sweetness` $S$ (default 10), `ideal_fluffiness` $F$ (default 5), `cost_weight`
      $\lambda$ (default 0.5): array fields.
    """

    properties: CakeProperties = eqx.field(default_factory=CakeProperties)
    ideal_sweetness: Scalar = _field(10.0)
    ideal_fluffiness: Scalar = _field(5.0)
    cost_weight: Scalar = _field(0.5)

    def __call__(self, ingredients: Ingredients) -> Scalar:
        """**Arguments:** `ingredients`. **Returns:** the deliciousness score, a scalar."""
        self.check_fields()
        sweetness, fluffiness, cost = self.properties(ingredients)
        return (
            -((sweetness - self.ideal_sweetness) ** 2)
            - (fluffiness - self.ideal_fluffiness) ** 2
            - self.cost_weight * cost
        )


class FluffinessLoss(TypedModule):
    r"""Squared gap between the cake's fluffiness and an ideal target that itself depends on the
    ingredients: $(\text{fluffiness}(x) - T(x))^2$ with $T(x) = t_0 + w_T \cdot x$ (the course's
    $2 + 0.5\,x_\text{butter} + x_\text{eggs} - 0.1\,x_\text{flour}$).

    With `stop_target_gradient=True` the target goes through `jax.lax.stop_gradient`: its value
    is used but it is treated as a constant when differentiating, so the gradient is
    $2(\text{fluffiness} - T)\,\nabla\text{fluffiness}$ rather than
    $2(\text{fluffiness} - T)(\nabla\text{fluffiness} - \nabla T)$.

    **Fields:**

    - `stop_target_gradient`: static; whether the target's gradient is stopped.
    - `properties`: the `CakeProperties` the fluffiness comes from.
    - `target_base` $t_0$ (default 2) and `target_weights` $w_T$ (default
      $(0.5, 1, -0.1, 0)$): array fields.
    """

    stop_target_gradient: bool = eqx.field(static=True)
    properties: CakeProperties = eqx.field(default_factory=CakeProperties)
    target_base: Scalar = _field(2.0)
    target_weights: Float[Array, "4"] = _field((0.5, 1.0, -0.1, 0.0))

    def __call__(self, ingredients: Ingredients) -> Scalar:
        """**Arguments:** `ingredients`. **Returns:** the loss, a scalar."""
        # One checked split of the amounts for both terms (the properties' own and the
        # target's), so that the batch is read once.
        self.check_fields()
        self.properties.check_fields()
        amounts = self.properties._amounts(ingredients)
        fluffiness = self.properties._fluffiness(amounts)
        target = self.target_base + _dot4(self.target_weights, amounts)
        if self.stop_target_gradient:
            target = jax.lax.stop_gradient(target)
        return (fluffiness - target) ** 2


class SweetnessError(TypedModule):
    r"""Squared error of the cake's sweetness against one customer's target $t$:
    $(\text{sweetness}(x) - t)^2$. With `cakejax.per_example_grad` it gives each customer's
    gradient.

    **Fields:**

    - `properties`: the `CakeProperties` the sweetness comes from.
    """

    properties: CakeProperties = eqx.field(default_factory=CakeProperties)

    def __call__(self, ingredients: Ingredients, target: ScalarLike) -> Scalar:
        """**Arguments:** `ingredients`, and the customer's target sweetness `target`.
        **Returns:** the squared error, a scalar."""
        self.check_fields()
        target = as_float(target)
        target = checked(
            target,
            ~jnp.isfinite(target),
            "SweetnessError: argument 'target' must be finite, got NaN or inf",
        )
        return (self.properties.sweetness(ingredients) - target) ** 2
