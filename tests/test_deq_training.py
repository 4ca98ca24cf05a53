"""Issue 32: a deep-equilibrium model kept contracting by `spectral_normalise`, with
`jacobian_penalty` in its loss and `spectral_radius` as its monitor, trained with optax under
`eqx.filter_jit`, `jax.vmap` and `eqx.filter_grad` (the transforms training puts them
through), in float32 and float64."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree
from jax.test_util import check_grads

import cakejax as cj


@pytest.fixture(autouse=True)
def standard_promotion():
    """optax mixes Python floats and int32 step counts: standard promotion, as users run."""
    with jax.numpy_dtype_promotion("standard"):
        yield


class SmallDEQ(eqx.Module):
    W: jax.Array
    U: jax.Array
    V: jax.Array

    def __init__(self, features, hidden, classes, *, key, scale=1.5):
        kw, ku, kv = jax.random.split(key, 3)
        # ||W||_2 about 3 x scale / 2: far outside contraction unless normalised.
        self.W = scale * jax.random.normal(kw, (hidden, hidden)) / jnp.sqrt(hidden)
        self.U = jax.random.normal(ku, (hidden, features))
        self.V = jax.random.normal(kv, (classes, hidden)) / jnp.sqrt(hidden)

    def cell(self, x):
        W = cj.spectral_normalise(self.W, 0.9)
        return eqx.Partial(lambda z, W, u: jnp.tanh(W @ z + u), W=W, u=self.U @ x)

    def __call__(self, x):
        z = cj.FixedPoint(self.cell(x), rtol=1e-6 if x.dtype == jnp.float32 else 1e-12)
        z = z(jnp.zeros(self.W.shape[0], x.dtype))
        return self.V @ z, z


def _loss(model, x, y, key, penalty):
    logits, z = jax.vmap(model)(x)
    value = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    keys = jax.random.split(key, x.shape[0])
    jac = jax.vmap(lambda x, z, k: cj.jacobian_penalty(model.cell(x), z, key=k))(x, z, keys)
    return value + penalty * jac.mean()


def _data(dtype, n=96, features=6, classes=3):
    kx, kc = jax.random.split(jax.random.key(5))
    centres = 2 * jax.random.normal(kc, (classes, features))
    y = jnp.arange(n) % classes
    x = centres[y] + 0.5 * jax.random.normal(kx, (n, features))
    return x.astype(dtype), y


def test_trains_kept_contracting(x64):
    """40 adam steps at lr 3e-2 on a W that starts at ||W||_2 about 2.6: the normalised
    weight's norm stays at most 0.9 at every step (checked by SVD), the monitored radius at
    the fixed points stays below it, `solve(..., spectral_radius=True)` agrees with
    `spectral_radius`, and the loss falls below a third of its start."""
    dtype = jnp.float64 if x64 else jnp.float32
    x, y = _data(dtype)
    model = jax.tree_util.tree_map(
        lambda a: a.astype(dtype), SmallDEQ(6, 16, 3, key=jax.random.key(0))
    )
    assert float(jnp.linalg.norm(model.W, 2)) > 1.5
    tx = optax.adam(3e-2)
    opt_state = tx.init(eqx.filter(model, eqx.is_array))

    @eqx.filter_jit
    def step(model, opt_state, key):
        value, grads = eqx.filter_value_and_grad(_loss)(model, x, y, key, 0.05)
        updates, opt_state = tx.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), opt_state, value

    @eqx.filter_jit
    def monitor(model):
        _, z = jax.vmap(model)(x)
        radius = jax.vmap(lambda x, z: cj.spectral_radius(model.cell(x), z))(x, z)
        solved = jax.vmap(
            lambda x: cj.FixedPoint(model.cell(x)).solve(jnp.zeros(16, dtype), spectral_radius=True)
        )(x)
        return radius, solved.spectral_radius

    key = jax.random.key(1)
    losses = []
    for _ in range(40):
        key, sub = jax.random.split(key)
        model, opt_state, value = step(model, opt_state, sub)
        losses.append(float(value))
        norm = float(jnp.linalg.norm(cj.spectral_normalise(model.W, 0.9), 2))
        assert norm <= 0.9 * (1 + 10 * jnp.finfo(dtype).eps)
        radius, carried = monitor(model)
        assert bool(jnp.isfinite(radius).all()) and float(jnp.max(radius)) <= 0.9 * 1.05
        np.testing.assert_allclose(carried, radius, rtol=1e-3)
    assert losses[-1] < losses[0] / 3


def test_the_whole_training_loss_has_the_right_gradient(f64):
    """Cross-entropy through the implicit layer plus the Jacobian penalty at its fixed
    points, with the normalisation active (||W||_2 about 2.6, scaled to 0.9): the gradient
    with respect to every parameter, under vmap and eqx.filter_grad, agrees with finite
    differences, at a fixed probe key."""
    x, y = _data(jnp.float64, n=12)
    model = jax.tree_util.tree_map(
        lambda a: a.astype(jnp.float64), SmallDEQ(6, 5, 3, key=jax.random.key(2))
    )
    flat, unravel = ravel_pytree(eqx.filter(model, eqx.is_array))
    static = eqx.filter(model, eqx.is_array, inverse=True)

    def of_flat(p):
        return _loss(eqx.combine(unravel(p), static), x, y, jax.random.key(3), 0.1)

    check_grads(of_flat, (flat,), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)
    grads = eqx.filter_grad(_loss)(model, x, y, jax.random.key(3), 0.1)
    np.testing.assert_allclose(
        ravel_pytree(eqx.filter(grads, eqx.is_array))[0], jax.grad(of_flat)(flat), rtol=1e-10
    )
