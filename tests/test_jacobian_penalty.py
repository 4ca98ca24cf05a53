"""`jacobian_penalty`: Hutchinson's estimate of the squared Frobenius norm of a Jacobian
(issue 32): its mean is the exact norm, its gradient's mean the exact norm's gradient, under
jit, vmap and eqx.filter_grad, in float32 and float64."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cakejax as cj


class _Cell(eqx.Module):
    """x ↦ tanh(W x + b): a deep-equilibrium cell."""

    W: jax.Array
    b: jax.Array

    def __call__(self, x):
        return jnp.tanh(self.W @ x + self.b)


def _cell(n=6, scale=0.9):
    kw, kb = jax.random.split(jax.random.key(1))
    dtype = jnp.result_type(float)
    return _Cell(
        scale * jax.random.normal(kw, (n, n), dtype) / jnp.sqrt(n),
        jax.random.normal(kb, (n,), dtype),
    )


def _exact(cell, x):
    return jnp.sum(jax.jacfwd(cell)(x) ** 2)


def test_mean_is_the_exact_norm(x64):
    cell = _cell()
    x = jnp.linspace(-1.0, 1.0, 6, dtype=jnp.result_type(float))
    k = 20_000
    estimate = cj.jacobian_penalty(cell, x, key=jax.random.key(0), samples=k)
    exact = _exact(cell, x)
    # Gaussian probes: the variance of one sample is 2 ||J J^T||_F^2.
    jjt = jax.jacfwd(cell)(x) @ jax.jacfwd(cell)(x).T
    std = float(jnp.sqrt(2 * jnp.sum(jjt**2) / k))
    assert abs(float(estimate) - float(exact)) <= 5 * std
    assert estimate.dtype == x.dtype


def test_gradient_mean_is_the_exact_gradient(x64):
    """With respect to the module's parameters, as a training loss differentiates it."""
    cell = _cell()
    x = jnp.linspace(-1.0, 1.0, 6, dtype=jnp.result_type(float))
    grad = eqx.filter_grad(
        lambda c: cj.jacobian_penalty(c, x, key=jax.random.key(3), samples=40_000)
    )(cell)
    exact = eqx.filter_grad(lambda c: _exact(c, x))(cell)
    for g, e in zip(jax.tree.leaves(grad), jax.tree.leaves(exact), strict=True):
        np.testing.assert_allclose(g, e, atol=0.05 * float(jnp.max(jnp.abs(e))))


def test_one_sample_unbiased_over_keys():
    """The estimator with samples=1, as training uses it, averages to the exact norm over
    independent keys (the mean of 4000 draws within 5 standard errors)."""
    cell = _cell(n=4)
    x = jnp.asarray([0.3, -0.2, 0.5, 0.1])
    keys = jax.random.split(jax.random.key(7), 4000)
    draws = jax.vmap(lambda k: cj.jacobian_penalty(cell, x, key=k))(keys)
    error = float(jnp.std(draws)) / np.sqrt(len(keys))
    assert abs(float(jnp.mean(draws)) - float(_exact(cell, x))) <= 5 * error


def test_under_jit_vmap_and_pytrees():
    cell = _cell(n=4)
    xs = jax.random.normal(jax.random.key(2), (8, 4))
    keys = jax.random.split(jax.random.key(5), 8)
    batched = jax.jit(jax.vmap(lambda x, k: cj.jacobian_penalty(cell, x, key=k, samples=3)))
    one = [cj.jacobian_penalty(cell, x, key=k, samples=3) for x, k in zip(xs, keys, strict=True)]
    np.testing.assert_allclose(batched(xs, keys), jnp.stack(one), rtol=1e-5)

    def split(tree):  # a PyTree state and output: two halves of the cell's
        y = cell(jnp.concatenate([tree["a"], tree["b"]]))
        return (y[:2], y[2:])

    tree = {"a": xs[0, :2], "b": xs[0, 2:]}
    k = 20_000
    estimate = cj.jacobian_penalty(split, tree, key=jax.random.key(0), samples=k)
    np.testing.assert_allclose(estimate, _exact(cell, xs[0]), rtol=0.05)


def test_bad_arguments():
    cell = _cell(n=4)
    x = jnp.ones(4)
    for samples in (0, True, 2.0):
        with pytest.raises((TypeError, ValueError), match=r"(?s)jacobian_penalty.*samples"):
            cj.jacobian_penalty(cell, x, key=jax.random.key(0), samples=samples)
    with pytest.raises(TypeError, match=r"(?s)jacobian_penalty.*'?x'? must|parameter 'x'"):
        cj.jacobian_penalty(cell, jnp.ones(4, int), key=jax.random.key(0))
    with pytest.raises(TypeError, match="jacobian_penalty: fn must return a floating array"):
        cj.jacobian_penalty(lambda x: x > 0, x, key=jax.random.key(0))
