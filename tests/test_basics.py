"""Part 1 of the course: the polynomial cake quality and the like model."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from jax.test_util import check_grads

import cakejax as cj
from cakejax import _course as course

from .helpers import assert_course, serialise_roundtrip


def like_data():
    features = jnp.asarray(course.LIKE_FEATURES, dtype=float)
    return features, jnp.asarray(course.LIKES)


def test_cake_quality_derivatives_match_course(x64):
    quality = cj.Polynomial.cake_quality()
    for n, expected in enumerate(course.POLY_DERIVATIVES, start=1):
        assert_course(cj.nth_derivative(quality, n)(course.POLY_X), expected)


@settings(max_examples=25)
@given(x=st.floats(-5.0, 5.0))
def test_polynomial_derivatives_are_analytic(f64, x):
    quality = cj.Polynomial.cake_quality()
    analytic = (x**3 + 2 * x**2 - 3 * x + 1, 3 * x**2 + 4 * x - 3, 6 * x + 4, 6.0, 0.0)
    for n, expected in enumerate(analytic):
        np.testing.assert_allclose(
            cj.nth_derivative(quality, n)(x), expected, rtol=1e-12, atol=1e-12
        )


def test_nth_derivative_rejects_negative_order():
    with pytest.raises(ValueError, match="n must be an int >= 0"):
        cj.nth_derivative(jnp.sin, -1)


def test_like_model_init_draws_the_courses_parameters(x64):
    model = cj.LikeModel.init(jax.random.key(course.LIKE_SEED), 3)
    # The course's own draw, in its float32.
    _, w_key, b_key = jax.random.split(jax.random.key(course.LIKE_SEED), 3)
    np.testing.assert_array_equal(model.weights, jax.random.normal(w_key, (3,), jnp.float32))
    np.testing.assert_array_equal(model.bias, jax.random.normal(b_key, (), jnp.float32))
    assert model.weights.dtype == jnp.result_type(float)


def test_like_loss_and_gradients_match_course(x64):
    model = cj.LikeModel.init(jax.random.key(course.LIKE_SEED), 3)
    features, likes = like_data()
    loss, grads = eqx.filter_value_and_grad(cj.like_loss)(model, features, likes)
    assert_course(loss, course.LIKE_LOSS)
    assert_course(grads.weights, course.LIKE_GRAD_WEIGHTS)
    assert_course(grads.bias, course.LIKE_GRAD_BIAS)
    # The gradient is a PyTree shaped like the model.
    assert isinstance(grads, cj.LikeModel)

    # With respect to the weights alone, and the bias alone.
    def loss_of(weights, bias):
        return cj.like_loss(cj.LikeModel(weights, bias), features, likes)

    grad_w = jax.grad(loss_of, argnums=0)(model.weights, model.bias)
    grad_b = jax.grad(loss_of, argnums=1)(model.weights, model.bias)
    assert_course(grad_w, course.LIKE_GRAD_WEIGHTS)
    assert_course(grad_b, course.LIKE_GRAD_BIAS)


def test_like_model_probabilities_are_sigmoid_of_logits(x64):
    model = cj.LikeModel.init(jax.random.key(0), 3)
    features, _ = like_data()
    logits = features @ model.weights + model.bias
    np.testing.assert_allclose(model(features), 1 / (1 + np.exp(-np.asarray(logits))), rtol=1e-6)


def test_like_loss_is_exact_where_the_courses_epsilon_is_not():
    # A confidently wrong prediction: logit 1e4 for a cake that was not liked. The exact
    # negative log-likelihood is softplus(1e4) = 1e4; the course's log(p + 1e-7) caps it at
    # -log(1e-7) = 16.1 and its gradient vanishes.
    model = cj.LikeModel(jnp.asarray([1e4]), 0.0)
    features = jnp.asarray([[1.0]])
    likes = jnp.asarray([False])
    loss, grads = eqx.filter_value_and_grad(cj.like_loss)(model, features, likes)
    np.testing.assert_allclose(loss, 1e4, rtol=1e-6)
    np.testing.assert_allclose(grads.weights, [1.0], rtol=1e-6)
    np.testing.assert_allclose(grads.bias, 1.0, rtol=1e-6)


@settings(max_examples=10)
@given(seed=st.integers(0, 2**31 - 1))
def test_like_loss_check_grads(f64, seed):
    model = cj.LikeModel.init(jax.random.key(seed), 3)
    features, likes = like_data()
    check_grads(
        lambda w, b: cj.like_loss(cj.LikeModel(w, b), features, likes),
        (model.weights, model.bias),
        order=2,
        modes=("fwd", "rev"),
    )


def test_polynomial_check_grads(f64):
    quality = cj.Polynomial.cake_quality()
    check_grads(quality, (jnp.asarray(0.7),), order=2, modes=("fwd", "rev"))
    check_grads(lambda c: cj.Polynomial(c)(0.7), (quality.coeffs,), order=2, modes=("fwd", "rev"))


def test_like_model_under_transforms(x64):
    model = cj.LikeModel.init(jax.random.key(1), 3)
    features, likes = like_data()
    eager = model(features)
    np.testing.assert_allclose(jax.jit(lambda m, f: m(f))(model, features), eager, rtol=1e-6)
    np.testing.assert_allclose(eqx.filter_jit(model)(features), eager, rtol=1e-6)
    # vmap over cakes one at a time gives the batch result.
    one = jax.vmap(lambda row: model(row[None, :])[0])(features)
    np.testing.assert_allclose(one, eager, rtol=1e-6)
    jac_fwd = jax.jacfwd(model)(features)
    jac_rev = jax.jacrev(model)(features)
    np.testing.assert_allclose(jac_fwd, jac_rev, rtol=1e-5, atol=1e-7)
    # dp_i/dphi_i = p_i (1 - p_i) w: the analytic Jacobian.
    p = np.asarray(eager)
    expected = np.einsum("ij,i,k->ijk", np.eye(4), p * (1 - p), np.asarray(model.weights))
    np.testing.assert_allclose(jac_fwd, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "make",
    [cj.Polynomial.cake_quality, lambda: cj.LikeModel.init(jax.random.key(3), 3)],
    ids=["Polynomial", "LikeModel"],
)
def test_serialise_roundtrip(make, tmp_path):
    model = make()
    restored = serialise_roundtrip(model, tmp_path)
    if isinstance(model, cj.Polynomial):
        assert restored(1.5) == model(1.5)
    else:
        features, _ = like_data()
        np.testing.assert_array_equal(restored(features), model(features))
