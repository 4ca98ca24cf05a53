"""hvp, nth_derivative and per_example_grad against their definitions."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings, strategies as st

import cakejax as cj


def rosenbrock(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


@settings(max_examples=10)
@given(seed=st.integers(0, 2**31 - 1), d=st.sampled_from([2, 5, 12]))
def test_hvp_is_hessian_times_vector(f64, seed, d):
    x, v = jax.random.normal(jax.random.key(seed), (2, d))
    np.testing.assert_allclose(
        cj.hvp(rosenbrock, x, v), jax.hessian(rosenbrock)(x) @ v, rtol=1e-10, atol=1e-10
    )


def test_hvp_of_quadratic_is_exact(f64):
    a = jax.random.normal(jax.random.key(0), (5, 5))
    a = a + a.T
    x = jnp.arange(5.0)
    v = jnp.ones(5)
    np.testing.assert_allclose(cj.hvp(lambda y: 0.5 * y @ a @ y, x, v), a @ v, rtol=1e-12)


def test_nth_derivative_of_sin_cycles(f64):
    x = 0.3
    expected = [np.sin(x), np.cos(x), -np.sin(x), -np.cos(x), np.sin(x)]
    for n, value in enumerate(expected):
        np.testing.assert_allclose(cj.nth_derivative(jnp.sin, n)(x), value, rtol=1e-12)


def test_per_example_grad_is_a_loop_of_grads(x64):
    def loss(w, example):
        features, target = example
        return (features @ w - target) ** 2

    w = jnp.asarray([0.5, -1.0, 2.0])
    features = jax.random.normal(jax.random.key(1), (6, 3))
    targets = jnp.arange(6.0)
    grads = cj.per_example_grad(loss, w, (features, targets))
    loop = jnp.stack([jax.grad(loss)(w, (f, t)) for f, t in zip(features, targets, strict=True)])
    assert grads.shape == (6, 3)
    np.testing.assert_allclose(grads, loop, rtol=1e-6)
