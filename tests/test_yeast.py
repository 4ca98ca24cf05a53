"""YeastActivity: stable everywhere, exact derivatives of every order."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from jax.test_util import check_grads

import cakejax as cj


def test_course_case_is_stable(x64):
    yeast = cj.YeastActivity()
    assert yeast(500.0) == 500.0
    assert jax.grad(yeast)(500.0) == 1.0
    cold = yeast(-500.0)
    cold_grad = jax.grad(yeast)(-500.0)
    assert cold >= 0 and cold_grad >= 0
    assert np.isfinite(cold) and np.isfinite(cold_grad)


@pytest.mark.parametrize("beta", [0.01, 1.0, 3.0, 1e3])
def test_finite_for_every_finite_input(x64, beta):
    finfo = jnp.finfo(jnp.result_type(float))
    x = jnp.asarray(
        [-finfo.max, -1e30, -500.0, -1.0, -finfo.tiny, 0.0, finfo.tiny, 1.0, 500.0, 1e30, finfo.max]
    )
    yeast = cj.YeastActivity(beta)

    def derivatives(x):
        d1 = jax.grad(yeast)(x)
        d2 = jax.grad(jax.grad(yeast))(x)
        d3 = jax.grad(jax.grad(jax.grad(yeast)))(x)
        d_beta = jax.grad(lambda b: cj.YeastActivity(b)(x))(yeast.beta)
        return yeast(x), d1, d2, d3, d_beta

    for value in jax.vmap(derivatives)(x):
        assert np.all(np.isfinite(value))
    values, d1, _, _, _ = jax.vmap(derivatives)(x)
    assert np.all(values >= 0) and np.all(d1 >= 0) and np.all(d1 <= 1)


def test_matches_jax_softplus_and_its_derivatives(x64):
    # For beta = 1 the value is jax.nn.softplus operation for operation, and the derivatives
    # agree to rounding at their own scale (each is bounded by 1), over [-1e4, 1e4]. Where
    # they are tiny (x < -30) JAX's own chain of exp/log loses relative accuracy, while ours
    # stays exact (test_derivatives_are_analytic), hence an absolute comparison.
    x = jnp.linspace(-1e4, 1e4, 20001)
    x = jnp.concatenate([x, jnp.linspace(-30.0, 30.0, 6001)])
    yeast = cj.YeastActivity()
    np.testing.assert_array_equal(jax.vmap(yeast)(x), jax.vmap(jax.nn.softplus)(x))
    eps = jnp.finfo(x.dtype).eps
    for order in (1, 2, 3):
        ours = jax.vmap(cj.nth_derivative(yeast, order))(x)
        theirs = jax.vmap(cj.nth_derivative(jax.nn.softplus, order))(x)
        np.testing.assert_allclose(ours, theirs, rtol=16 * eps, atol=16 * eps)


def test_derivatives_are_analytic(f64):
    # Out to |beta x| = 200, where the second derivative beta s(1 - s) is e^-200: written
    # as s(1 - s) it cancels to 0 (the rule before this one did), so the reference is
    # beta sigma(beta x) sigma(-beta x), and the tolerance is relative.
    x = jnp.concatenate([jnp.linspace(-20.0, 20.0, 81), jnp.asarray([-50.0, 30.0, 50.0])])
    for beta in (0.5, 1.0, 4.0):
        yeast = cj.YeastActivity(beta)
        s = jax.nn.sigmoid(beta * x)
        np.testing.assert_allclose(jax.vmap(jax.grad(yeast))(x), s, rtol=1e-14)
        np.testing.assert_allclose(
            jax.vmap(jax.hessian(yeast))(x),
            beta * s * jax.nn.sigmoid(-beta * x),
            rtol=1e-13,
            atol=0,
        )
        # dy/dbeta = (x sigma(beta x) - softplus(beta x) / beta) / beta
        d_beta = jax.vmap(jax.grad(lambda b, v: cj.YeastActivity(b)(v)), in_axes=(None, 0))
        expected = (x * s - jnp.logaddexp(beta * x, 0.0) / beta) / beta
        np.testing.assert_allclose(d_beta(jnp.asarray(beta), x), expected, rtol=1e-10, atol=1e-14)


# beta >= 0.5: below it y ~ log(2)/beta has third derivatives of 1e4 and more, which
# check_grads' fixed finite-difference step cannot resolve (test_derivatives_are_analytic
# covers small beta exactly).
_yeast_of = jax.jit(lambda b, v: cj.YeastActivity(b)(v))


@settings(max_examples=10)
@given(x=st.floats(-30.0, 30.0), beta=st.floats(0.5, 5.0))
def test_check_grads(f64, x, beta):
    check_grads(_yeast_of, (jnp.asarray(beta), jnp.asarray(x)), order=2, modes=("fwd", "rev"))


def test_check_grads_float32():
    # float32 finite differences at moderate inputs, with check_grads' float32 tolerances.
    check_grads(
        lambda b, v: cj.YeastActivity(b)(v),
        (jnp.asarray(1.5), jnp.asarray(0.7)),
        order=2,
        modes=("fwd", "rev"),
    )


def test_in_a_user_model(x64):
    import equinox as eqx

    class Proofing(eqx.Module):
        weight: jax.Array
        activity: cj.YeastActivity

        def __call__(self, temperature):
            return self.activity(self.weight * temperature)

    model = Proofing(jnp.asarray(2.0), cj.YeastActivity(3.0))
    grads = eqx.filter_grad(lambda m: jnp.sum(m(jnp.asarray([0.1, -0.4]))))(model)
    t = jnp.asarray([0.1, -0.4])
    s = jax.nn.sigmoid(3.0 * 2.0 * t)
    np.testing.assert_allclose(grads.weight, jnp.sum(s * t), rtol=1e-5)
    assert np.isfinite(grads.activity.beta)


@pytest.mark.parametrize("beta", [0.0, -1.0, float("inf"), float("nan")])
def test_bad_beta(beta):
    with pytest.raises(ValueError, match="YeastActivity: field 'beta' must be positive and finite"):
        cj.YeastActivity(beta)
