"""Part 1 of the course, "The Basics": a polynomial cake-quality score and a logistic model of
whether a customer likes a cake."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray

from .._arguments import count
from .._checks import checked
from .._typing import as_float, as_float_array, Scalar, ScalarLike, TypedModule


def _polyval(coeffs: Float[Array, " terms"], x: ScalarLike) -> Scalar:
    x = as_float(x)
    x = checked(x, ~jnp.isfinite(x), "Polynomial: argument 'x' must be finite, got NaN or inf")
    return jnp.polyval(coeffs, x)


class Polynomial(TypedModule):
    r"""A polynomial score of one ingredient, $p(x) = \sum_k c_k\,x^{K-k}$ (highest power first).

    The course's cake quality is `Polynomial.cake_quality()`: $x^3 + 2x^2 - 3x + 1$, whose
    derivatives at $x = 1$ are 4, 10, 6 and 0 (see `cakejax.nth_derivative`).

    **Fields:**

    - `coeffs`: the coefficients $c_0, \dots, c_K$, highest power first (as `jnp.polyval`).
    """

    coeffs: Float[Array, " terms"] = eqx.field(converter=as_float_array)

    @classmethod
    def cake_quality(cls) -> "Polynomial":
        """The course's cake quality score $x^3 + 2x^2 - 3x + 1$."""
        return cls([1.0, 2.0, -3.0, 1.0])

    def __call__(self, x: ScalarLike) -> Scalar:
        """**Arguments:** `x`, the amount of the ingredient (a finite real number).
        **Returns:** $p(x)$."""
        self.check_fields()
        return _polyval(self.coeffs, x)


def _like_logits(
    weights: Float[Array, " features"],
    bias: Scalar,
    features: Float[ArrayLike, "cakes features"],
) -> Float[Array, " cakes"]:
    logits = jnp.asarray(features) @ weights + bias
    # Checked on the logits, one flag per cake: NaN or infinite features (or weights) give a
    # non-finite logit, and checking the (cakes,) logits costs a fraction of a pass over the
    # (cakes, features) batch.
    return checked(
        logits,
        ~jnp.isfinite(logits),
        "LikeModel: a cake's logit (features @ weights + bias) is NaN or infinite: "
        "its features, or the model's weights or bias, are not finite",
    )


class LikeModel(TypedModule):
    r"""Logistic model of "will the customer like the cake":
    $P(\text{like} \mid \phi) = \sigma(\phi \cdot w + b)$ for each cake's features $\phi$.

    **Fields:**

    - `weights`: $w$, one weight per feature.
    - `bias`: $b$, a scalar.
    """

    weights: Float[Array, " features"] = eqx.field(converter=as_float_array)
    bias: Scalar = eqx.field(converter=as_float_array)

    @classmethod
    def init(cls, key: PRNGKeyArray, n_features: int) -> "LikeModel":
        """Draws $w \\sim N(0, I)$ and $b \\sim N(0, 1)$ exactly as the course does.

        The key is split in three (`_, w_key, b_key = jax.random.split(key, 3)`) and the
        normals are drawn in float32, the course's precision, then cast to JAX's default float
        dtype: the same key gives the same model with and without `jax_enable_x64`, and
        `LikeModel.init(jax.random.key(42), 3)` is the course's model.

        **Arguments:**

        - `key`: a JAX PRNG key.
        - `n_features`: the number of features per cake, at least 1.
        """
        n_features = count("LikeModel.init", "n_features", n_features)
        _, w_key, b_key = jax.random.split(key, 3)
        dtype = jnp.result_type(float)
        weights = jax.random.normal(w_key, (n_features,), jnp.float32).astype(dtype)
        bias = jax.random.normal(b_key, (), jnp.float32).astype(dtype)
        return cls(weights, bias)

    def logits(self, features: Float[ArrayLike, "cakes features"]) -> Float[Array, " cakes"]:
        r"""The log-odds $\phi \cdot w + b$ of each cake being liked."""
        self.check_fields()
        return _like_logits(self.weights, self.bias, features)

    def __call__(self, features: Float[ArrayLike, "cakes features"]) -> Float[Array, " cakes"]:
        r"""**Arguments:** `features`, one row per cake. **Returns:** $\sigma(\phi \cdot w + b)$
        per cake."""
        return jax.nn.sigmoid(self.logits(features))


def _bce_from_logits(logits: Float[Array, " cakes"], likes: Bool[ArrayLike, " cakes"]) -> Scalar:
    return jnp.sum(jnp.where(likes, jax.nn.softplus(-logits), jax.nn.softplus(logits)))


def like_loss(
    model: LikeModel,
    features: Float[ArrayLike, "cakes features"],
    likes: Bool[ArrayLike, " cakes"],
) -> Scalar:
    r"""Negative log-likelihood of the customers' answers, computed stably from the logits.

    With $z = \phi \cdot w + b$: $-\log \sigma(z) = \operatorname{softplus}(-z)$ for a cake that
    was liked and $-\log(1 - \sigma(z)) = \operatorname{softplus}(z)$ for one that was not, so
    $L = \sum_i \operatorname{softplus}(\mp z_i)$. Unlike the course's
    $-\sum \log(p_i + 10^{-7})$ this needs no epsilon and stays finite and exact for any logit.

    **Arguments:**

    - `model`: the `LikeModel`.
    - `features`: one row of features per cake.
    - `likes`: whether each cake was liked.

    **Returns:** the summed loss, a scalar.
    """
    return _bce_from_logits(model.logits(features), likes)
