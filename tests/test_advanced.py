"""Part 2 of the course: properties, deliciousness, stop_gradient, per-customer gradients."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from jax.test_util import check_grads

import cakejax as cj
from cakejax import _course as course, examples
from cakejax.examples import cake

from .helpers import assert_course, cakes, directions, serialise_roundtrip


def test_ingredients_order_is_the_courses(x64):
    assert cj.INGREDIENTS == ("butter", "eggs", "flour", "sugar")
    assert cj.PROPERTIES == ("sweetness", "fluffiness", "cost")
    x = cj.ingredients(**course.CAKE)
    np.testing.assert_array_equal(x, [1.0, 3.0, 2.0, 1.5])
    assert x.dtype == jnp.result_type(float)


def test_properties_jacobians_jvp_vjp_match_course(x64):
    x = cake()
    properties = cj.CakeProperties()
    assert_course(properties(x), course.PROPERTIES_AT_CAKE)
    jac_fwd = jax.jacfwd(properties)(x)
    jac_rev = jax.jacrev(properties)(x)
    assert_course(jac_fwd, course.JACOBIAN_AT_CAKE)
    assert_course(jac_rev, course.JACOBIAN_AT_CAKE)
    tangent = jnp.asarray(course.JVP_TANGENT, dtype=x.dtype)
    assert_course(jax.jvp(properties, (x,), (tangent,))[1], course.JVP_OUT)
    cotangent = jnp.asarray(course.VJP_COTANGENT, dtype=x.dtype)
    assert_course(jax.vjp(properties, x)[1](cotangent)[0], course.VJP_OUT)


def test_properties_are_the_courses_formulas(f64):
    # The course's bake_cake_properties, written out, as an oracle at several cakes.
    def course_properties(v):
        butter, eggs, flour, sugar = v
        sweetness = 10 * jnp.log1p(sugar) + 0.1 * butter - 0.2 * flour
        fluffiness = 5 * (eggs / 3.0) - 0.5 * (flour - 2.0) ** 2 + 0.2 * butter
        cost = (sugar**1.1 + flour**0.9 + butter**1.2 + eggs**1.0) * 0.5
        return jnp.stack([sweetness, fluffiness, cost])

    for x in jax.random.uniform(jax.random.key(0), (20, 4), minval=0.0, maxval=5.0):
        np.testing.assert_allclose(cj.CakeProperties()(x), course_properties(x), rtol=1e-13)


def test_single_properties_and_batches_agree_with_the_vector(f64):
    """`sweetness`/`fluffiness`/`cost` are the components of `__call__`, and a vmapped batch
    (values, gradients, Hessians) is the per-cake computation, row by row."""
    properties = cj.CakeProperties()
    X = jax.random.uniform(jax.random.key(1), (16, 4), minval=0.0, maxval=5.0)
    stacked = jax.vmap(properties)(X)
    for i, name in enumerate(cj.PROPERTIES):
        np.testing.assert_array_equal(jax.vmap(getattr(properties, name))(X), stacked[:, i])
    for model in (
        cj.Deliciousness(),
        cj.FluffinessLoss(False),
        cj.FluffinessLoss(True),
        lambda x: cj.SweetnessError()(x, 9.5),
    ):
        for transform in (lambda f: f, jax.grad, jax.hessian):
            f = transform(model)
            batched = jax.jit(jax.vmap(f))(X)
            one = jax.jit(lambda x, f=f: f(x))  # compiled once, run on each row
            rows = jnp.stack([one(x) for x in X])
            np.testing.assert_allclose(batched, rows, rtol=1e-12, atol=0)


@pytest.mark.parametrize("bad", [-2.0, jnp.nan, jnp.inf])
def test_non_finite_or_negative_ingredient_is_an_error_in_every_transform(bad):
    x = jnp.asarray([1.0, 3.0, bad, 1.5])
    X = jnp.stack([cake(), x])
    score = cj.Deliciousness()
    for f, arg in (
        (score, x),
        (eqx.filter_jit(lambda x: score(x)), x),
        (eqx.filter_jit(jax.grad(score)), x),
        (eqx.filter_jit(jax.hessian(score)), x),
        (eqx.filter_jit(jax.vmap(jax.grad(score))), X),
        (eqx.filter_jit(jax.jacrev(cj.CakeProperties())), x),
    ):
        with pytest.raises(eqx.EquinoxRuntimeError, match="must be finite and non-negative"):
            f(arg)


def test_eqx_on_error_nan_poisons_the_bad_cakes_only(monkeypatch, f64):
    """Under EQX_ON_ERROR=nan (read at trace time) a bad cake's value and every derivative
    are NaN, and the other cakes of the batch are exactly what they are alone."""
    monkeypatch.setenv("EQX_ON_ERROR", "nan")
    X = jax.random.uniform(jax.random.key(2), (5, 4), minval=0.5, maxval=3.0)
    X = X.at[1, 2].set(-1.0).at[3, 0].set(jnp.inf)
    good = jnp.asarray([True, False, True, False, True])
    score = cj.Deliciousness()
    for transform in (lambda f: f, jax.grad, jax.hessian):
        out = jax.jit(jax.vmap(transform(score)))(X)
        flat = out.reshape(5, -1)
        assert bool(jnp.all(jnp.isnan(flat[~good])))
        expected = jnp.stack([transform(score)(x) for x in X[good]]).reshape(3, -1)
        np.testing.assert_allclose(flat[good], expected, rtol=1e-12, atol=0)
    jacobians = jax.jit(jax.vmap(jax.jacrev(cj.CakeProperties())))(X)
    assert bool(jnp.all(jnp.isnan(jacobians[~good])))
    assert bool(jnp.all(jnp.isfinite(jacobians[good])))


def test_hessian_and_hvp_match_course(x64):
    x = cake()
    score = cj.Deliciousness()
    assert_course(jax.hessian(score)(x), course.HESSIAN_AT_CAKE)
    direction = jnp.asarray(course.HVP_DIRECTION, dtype=x.dtype)
    assert_course(cj.hvp(score, x, direction), course.HVP_OUT)


def test_stop_gradient_matches_course(x64):
    x = cake()
    assert_course(jax.grad(cj.FluffinessLoss(False))(x), course.FLUFFINESS_GRAD)
    assert_course(jax.grad(cj.FluffinessLoss(True))(x), course.FLUFFINESS_GRAD_STOPPED)
    # Stopping the gradient changes the gradient, never the value.
    assert cj.FluffinessLoss(False)(x) == cj.FluffinessLoss(True)(x)


def test_stop_gradient_is_grad_of_fluffiness_only(f64):
    # With the target stopped: 2 (fluffiness - T) * d fluffiness / dx, analytically.
    x = cake()
    loss = cj.FluffinessLoss(True)
    fluff = cj.CakeProperties()(x)[1]
    gap = fluff - (2.0 + 0.5 * x[0] + x[1] - 0.1 * x[2])
    dfluff = jnp.asarray([0.2, 5 / 3, -(x[2] - 2.0), 0.0])
    np.testing.assert_allclose(jax.grad(loss)(x), 2 * gap * dfluff, rtol=1e-12, atol=1e-15)


def test_per_customer_gradients_match_course(x64):
    x = cake()
    targets = jnp.asarray(course.TARGET_SWEETNESS, dtype=x.dtype)
    grads = cj.per_example_grad(cj.SweetnessError(), x, targets)
    assert grads.shape == (4, 4)
    assert_course(grads, course.PER_CUSTOMER_GRADS)


def scalar_models():
    """The catalogue's scores of a cake: a scalar function of the cake each (built in the
    precision in force)."""
    scores = {}
    for name in ("Deliciousness", "FluffinessLoss", "FluffinessLoss(stopped)", "SweetnessError"):
        model, (_, *extra) = examples.EXAMPLES[name].build()
        scores[name] = lambda x, model=model, extra=extra: model(x, *extra)
    return scores


@pytest.mark.parametrize("name", list(scalar_models()))
def test_scalar_models_under_every_transform(x64, name):
    f = scalar_models()[name]
    x = cake()
    value = f(x)
    np.testing.assert_allclose(jax.jit(lambda x: f(x))(x), value, rtol=1e-6)
    np.testing.assert_allclose(eqx.filter_jit(f)(x), value, rtol=1e-6)
    grad = jax.grad(f)(x)
    np.testing.assert_allclose(jax.jacfwd(f)(x), grad, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jax.jacrev(f)(x), grad, rtol=1e-5, atol=1e-6)
    hessian = jax.hessian(f)(x)
    np.testing.assert_allclose(jax.jacrev(jax.jacfwd(f))(x), hessian, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(hessian, hessian.T, rtol=1e-5, atol=1e-5)
    v = jnp.asarray([0.3, -0.1, 0.2, 0.5], dtype=x.dtype)
    np.testing.assert_allclose(jax.jvp(f, (x,), (v,))[1], grad @ v, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jax.vjp(f, x)[1](jnp.ones_like(value))[0], grad, rtol=1e-6)
    np.testing.assert_allclose(cj.hvp(f, x, v), hessian @ v, rtol=1e-5, atol=1e-5)
    batch = jnp.stack([x, x + 0.5, x * 2])
    np.testing.assert_allclose(jax.vmap(f)(batch), jnp.stack([f(b) for b in batch]), rtol=1e-6)


@settings(max_examples=20)
@given(x=cakes, v=directions)
def test_jacobian_identities(x64, x, v):
    properties = cj.CakeProperties()
    jac = jax.jacfwd(properties)(x)
    np.testing.assert_allclose(jax.jacrev(properties)(x), jac, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jax.jvp(properties, (x,), (v,))[1], jac @ v, rtol=1e-5, atol=1e-5)
    u = v[:3]
    np.testing.assert_allclose(jax.vjp(properties, x)[1](u)[0], u @ jac, rtol=1e-5, atol=1e-5)
    score = cj.Deliciousness()
    np.testing.assert_allclose(cj.hvp(score, x, v), jax.hessian(score)(x) @ v, rtol=1e-4, atol=1e-4)
    batch = jnp.stack([x, 2 * x])
    np.testing.assert_allclose(
        jax.vmap(properties)(batch), jnp.stack([properties(x), properties(2 * x)]), rtol=1e-6
    )


# FluffinessLoss(stopped) is left out on purpose: its gradient is, by design, not the
# derivative finite differences see (test_stop_gradient_is_grad_of_fluffiness_only checks it).
@pytest.mark.parametrize(
    "name", ["CakeProperties", "Deliciousness", "FluffinessLoss", "SweetnessError"]
)
def test_check_grads_every_model(f64, name):
    # Built inside the float64 context, so the parameters are float64 too.
    model = {"CakeProperties": cj.CakeProperties(), **scalar_models()}[name]
    f = jax.jit(lambda x: model(x))  # traced once per transform, not op by op

    @settings(max_examples=5)
    @given(x=cakes)
    def check(x):
        check_grads(f, (x,), order=2, modes=("fwd", "rev"))

    check()


def test_check_grads_with_respect_to_parameters(f64):
    x = cake()
    params, static = eqx.partition(cj.Deliciousness(), eqx.is_inexact_array)
    leaves, treedef = jax.tree_util.tree_flatten(params)

    def score(*leaves):
        return eqx.combine(jax.tree_util.tree_unflatten(treedef, leaves), static)(x)

    check_grads(score, tuple(leaves), order=2, modes=("fwd", "rev"))


@pytest.mark.parametrize(
    "model",
    [cj.CakeProperties(), cj.Deliciousness(), cj.FluffinessLoss(True), cj.SweetnessError()],
    ids=lambda m: type(m).__name__,
)
def test_serialise_roundtrip(model, tmp_path):
    changed = jax.tree_util.tree_map(lambda a: a * 1.1, model)
    restored = serialise_roundtrip(changed, tmp_path)
    x = cake()
    args = (x, 9.5) if isinstance(model, cj.SweetnessError) else (x,)
    np.testing.assert_array_equal(restored(*args), changed(*args))
