"""StraightThrough, GradientScale, GradientReversal: exact forward values, the derivatives
they promise under every transform, at scales from 1e-12 to 1e12."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

import cakejax as cj
from cakejax.testing import assert_layer


# Magnitudes of users' values, tangents and cotangents.
magnitudes = st.floats(1e-12, 1e12).flatmap(lambda m: st.sampled_from([m, -m]))
vectors = st.lists(magnitudes, min_size=1, max_size=6).map(jnp.asarray)
scales = st.floats(-1e3, 1e3).filter(lambda s: abs(s) > 1e-6)


@settings(max_examples=25)
@given(x=vectors)
def test_straight_through_value_is_bitwise_and_derivative_is_identity(x64, x):
    layer = cj.StraightThrough(jnp.round)
    assert np.array_equal(np.asarray(layer(x)), np.asarray(jnp.round(x)))
    assert np.array_equal(np.asarray(jax.jit(layer)(x)), np.asarray(jnp.round(x)))
    cotangent = x[::-1] * 3.0
    np.testing.assert_array_equal(jax.vjp(layer, x)[1](cotangent)[0], cotangent)
    np.testing.assert_array_equal(jax.jvp(layer, (x,), (cotangent,))[1], cotangent)
    np.testing.assert_array_equal(jax.jacfwd(layer)(x), jnp.eye(x.size, dtype=x.dtype))
    np.testing.assert_array_equal(jax.hessian(lambda v: jnp.sum(layer(v)))(x), 0.0)


def test_straight_through_is_exact_where_the_stop_gradient_recipe_is_not(f64):
    # jax#9032: x + stop_gradient(f(x) - x) is not f(x) in floating point: for a binary unit
    # at 3e17, f(x) - x rounds to -x and the recipe gives 0 where sign(x) is 1.
    x = jnp.asarray([3e17, -5e16, 0.5])
    recipe = x + jax.lax.stop_gradient(jnp.sign(x) - x)
    np.testing.assert_array_equal(recipe[:2], [0.0, 0.0])
    np.testing.assert_array_equal(cj.StraightThrough(jnp.sign)(x), [1.0, -1.0, 1.0])


def test_straight_through_learns_the_parameters_of_fn():
    class Quantiser(eqx.Module):
        step: jax.Array

        def __call__(self, x):
            return jnp.round(x / self.step) * self.step

    x = jnp.asarray([0.3, -1.4, 2.6, 5.5])
    layer = cj.StraightThrough(Quantiser(jnp.asarray(0.5)))
    grads = eqx.filter_grad(lambda m, v: jnp.sum(m(v)))(layer, x)
    # d/dstep of round(x/step)·step with round's own derivative 0: round(x/step), summed.
    np.testing.assert_allclose(grads.fn.step, jnp.sum(jnp.round(x / 0.5)))
    np.testing.assert_array_equal(jax.grad(lambda v: jnp.sum(layer(v)))(x), jnp.ones(4))


def test_straight_through_refuses_a_change_of_shape_or_dtype():
    with pytest.raises(
        TypeError,
        match=r"StraightThrough: fn must return an array of its "
        r"input's shape and dtype.*got bool\[3\]",
    ):
        cj.StraightThrough(lambda v: v > 0)(jnp.ones(3))
    with pytest.raises(TypeError, match=r"got float32\[\] for an input of float32\[3\]"):
        jax.grad(lambda v: cj.StraightThrough(jnp.sum)(v).sum())(jnp.ones(3))


@settings(max_examples=25)
@given(x=vectors, scale=scales)
@example(x=jnp.asarray([1.0]), scale=0.99999)  # the reversal's 1 - 0.99999 cancels in float32
def test_gradient_scale_and_reversal(x64, x, scale):
    for layer, factor in ((cj.GradientScale(scale), scale), (cj.GradientReversal(scale), -scale)):
        np.testing.assert_array_equal(layer(x), x)
        cotangent = jnp.flip(x)
        want = (factor * cotangent).astype(x.dtype)
        np.testing.assert_allclose(jax.vjp(layer, x)[1](cotangent)[0], want, rtol=1e-6)
        np.testing.assert_allclose(jax.jvp(layer, (x,), (cotangent,))[1], want, rtol=1e-6)
        # d/dv of g(v)·v is fl(fl(f·v) + v), with f the factor in x's dtype: near f = -1 the
        # sum cancels (f32(-0.99999) + 1 is 0.14 % off 1e-5), so the expectation uses the
        # layer's f (exactly, in float64) and allows the two roundings, eps·(|f·v| + |result|).
        f = np.float64(np.asarray(factor, x.dtype))
        v = np.asarray(x, np.float64)
        want = f * v + v
        got = np.asarray(jax.vmap(jax.grad(lambda v, g=layer: g(v) * v))(x), np.float64)
        eps = float(jnp.finfo(x.dtype).eps)
        assert np.all(np.abs(got - want) <= eps * (np.abs(f * v) + np.abs(want))), (got, want)


def test_second_derivatives_are_scaled_by_the_square(f64):
    x = jnp.asarray([0.3, -1.2])
    f = lambda v: jnp.sum(jnp.sin(v) * v)  # noqa: E731
    for layer, factor in ((cj.GradientScale(3.0), 3.0), (cj.GradientReversal(0.5), -0.5)):
        np.testing.assert_allclose(
            jax.hessian(lambda v, g=layer: f(g(v)))(x), factor**2 * jax.hessian(f)(x), rtol=1e-12
        )


def test_scale_gradient_takes_a_traced_schedule_without_recompiling():
    traces = []

    @jax.jit
    def step(x, lam):
        traces.append(None)
        return jax.grad(lambda v: jnp.sum(cj.scale_gradient(v, -lam) ** 2))(x)

    x = jnp.asarray([1.0, 2.0])
    for lam in (0.0, 0.5, 1.0):
        np.testing.assert_allclose(step(x, jnp.asarray(lam)), -lam * 2 * x)
    assert len(traces) == 1


def test_complex_inputs(x64):
    z = jnp.asarray([1.0 + 2.0j, -0.5j])
    layer = cj.GradientScale(2.0)
    np.testing.assert_array_equal(layer(z), z)
    np.testing.assert_allclose(jax.jvp(layer, (z,), (z,))[1], 2 * z)


@pytest.mark.parametrize(
    "layer, reference",
    [
        (cj.StraightThrough(jnp.round), lambda x: x),
        (cj.StraightThrough(jnp.sign), lambda x: x),
        (cj.GradientScale(0.25), lambda x: 0.25 * x),
        (cj.GradientReversal(), lambda x: -x),
        (cj.GradientReversal(3.0), lambda x: -3.0 * x),
    ],
    ids=["round", "sign", "scale", "reversal", "reversal 3"],
)
def test_assert_layer_with_the_derivative_they_promise(x64, layer, reference):
    assert_layer(layer, jnp.asarray([0.3, -1.4, 2.6]), reference=reference)
