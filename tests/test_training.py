"""Every layer inside a user's Equinox model, trained with optax in the loop the Equinox docs
write; parameters that an optimiser step, `eqx.tree_at` or a checkpoint puts out of range are
errors where the model is called."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import cakejax as cj
from cakejax.examples import cake

from .helpers import run_python, serialise_roundtrip


@pytest.fixture(autouse=True)
def standard_promotion():
    """optax mixes Python floats and int32 step counts, which the suite's strict promotion
    refuses: its users run under JAX's default promotion, and so do these tests."""
    with jax.numpy_dtype_promotion("standard"):
        yield


def _layers():
    """(name, layer, input) for every cakejax layer a model can hold."""
    x3 = jnp.asarray([0.3, -1.4, 2.6])
    return [
        ("YeastActivity", cj.YeastActivity(2.0), x3),
        ("GradientClip", cj.GradientClip(0.1), x3),
        ("GradientClip, masked", cj.GradientClip(0.1, mask=[True, False, True]), x3),
        (
            "GradientClip, masked norm",
            cj.GradientClip(0.1, mask=[[True, False, True]], mode="norm"),
            x3[None],
        ),
        ("StraightThrough", cj.StraightThrough(jnp.round), x3),
        ("GradientScale", cj.GradientScale(0.5), x3),
        ("GradientReversal", cj.GradientReversal(2.0), x3),
        ("FixedPoint", cj.FixedPoint(cj.DoughMaturity(0.75, 10.0)), jnp.asarray(0.0)),
    ]


class Net(eqx.Module):
    """A user's model: a learnable weight, a cakejax layer, a learnable readout."""

    weight: jax.Array
    layer: eqx.Module
    readout: jax.Array

    def __call__(self, x):
        return jnp.sum(self.readout * self.layer(self.weight * x))


@pytest.mark.parametrize("case", _layers(), ids=lambda c: c[0])
@pytest.mark.parametrize(
    "is_param", [eqx.is_array, eqx.is_inexact_array], ids=["is_array", "is_inexact_array"]
)
def test_trains_in_the_equinox_optax_loop(case, is_param):
    _, layer, x = case
    model = Net(jnp.asarray(1.5), layer, jnp.ones_like(x) * 0.5)
    target = jnp.asarray(2.0)
    optim = optax.adam(1e-2)
    opt_state = optim.init(eqx.filter(model, is_param))

    @eqx.filter_jit
    def step(model, opt_state):
        loss, grads = eqx.filter_value_and_grad(lambda m: (m(x) - target) ** 2)(model)
        updates, opt_state = optim.update(grads, opt_state, eqx.filter(model, is_param))
        return eqx.apply_updates(model, updates), opt_state, loss

    losses = []
    for _ in range(30):
        model, opt_state, loss = step(model, opt_state)
        losses.append(float(loss))
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    # The layer's structure (static fields: bound, mask, mode, scale, fn) is untouched.
    assert jax.tree_util.tree_structure(model) == jax.tree_util.tree_structure(
        Net(jnp.asarray(1.5), layer, jnp.ones_like(x) * 0.5)
    )


@pytest.mark.parametrize("case", _layers(), ids=lambda c: c[0])
def test_saved_and_loaded(case, tmp_path):
    _, layer, x = case
    changed = jax.tree_util.tree_map(lambda a: a * 1.25 if eqx.is_array(a) else a, layer)
    restored = serialise_roundtrip(changed, tmp_path)
    np.testing.assert_array_equal(restored(x), changed(x))


def test_masked_clip_has_no_array_leaf_but_the_mask_is_kept():
    clip = cj.GradientClip(0.1, mask=[True, False, False, False])
    assert jax.tree_util.tree_leaves(clip) == []
    np.testing.assert_array_equal(np.asarray(clip.mask), [True, False, False, False])
    # Equal masks are equal static data: no recompilation for an equal layer.
    assert clip == cj.GradientClip(0.1, mask=np.asarray([True, False, False, False]))
    assert clip != cj.GradientClip(0.1, mask=[True, True, False, False])
    with pytest.raises(TypeError, match="GradientClip: field 'mask' is a static"):
        jax.jit(lambda m: cj.GradientClip(0.1, mask=m)(cake()))(jnp.ones(4, bool))


# β out of range, put there after construction, in each of the ways a user gets there.
def _beta_tree_at(beta):
    return eqx.tree_at(lambda m: m.beta, cj.YeastActivity(), jnp.asarray(beta))(100.0)


def _beta_jit_argument(beta):
    return jax.jit(lambda b, x: cj.YeastActivity(b)(x))(beta, 100.0)


def _beta_optimiser_step(beta):
    # SGD with a learning rate that overshoots: one step takes β from 1 to `beta`.
    model = cj.YeastActivity()
    grad = eqx.filter_grad(lambda m: m(jnp.asarray(3.0)))(model)
    lr = (1.0 - beta) / float(grad.beta)
    optim = optax.sgd(lr)
    updates, _ = optim.update(grad, optim.init(model))
    return eqx.filter_jit(lambda m: m(jnp.asarray(3.0)))(eqx.apply_updates(model, updates))


def _beta_checkpoint(beta, tmp_path):
    path = tmp_path / "yeast.eqx"
    eqx.tree_serialise_leaves(
        path,
        cj.YeastActivity(jnp.asarray(beta))
        if beta > 0
        else eqx.tree_at(lambda m: m.beta, cj.YeastActivity(), jnp.asarray(beta)),
    )
    return eqx.tree_deserialise_leaves(path, cj.YeastActivity())(100.0)


_BAD_BETAS = [
    (how, beta)
    for how in ("tree_at", "jit argument", "optimiser step", "checkpoint", "grad")
    for beta in (-1.0, 0.0, float("inf"), float("nan"))
    if how != "optimiser step" or np.isfinite(beta)
]  # a finite step stays finite


@pytest.mark.parametrize(("how", "beta"), _BAD_BETAS)
def test_beta_out_of_range_is_an_error_where_called(beta, how, tmp_path):
    calls = {
        "tree_at": lambda: _beta_tree_at(beta),
        "jit argument": lambda: _beta_jit_argument(beta),
        "optimiser step": lambda: _beta_optimiser_step(beta),
        "checkpoint": lambda: _beta_checkpoint(beta, tmp_path),
        "grad": lambda: jax.grad(lambda b: cj.YeastActivity(b)(100.0))(jnp.asarray(beta)),
    }
    # Under plain jax.jit the error arrives wrapped in a JaxRuntimeError that carries the
    # message; eagerly and under eqx.filter_jit it is an EquinoxRuntimeError.
    with pytest.raises(Exception, match="YeastActivity: field 'beta' must be positive and finite"):
        jax.block_until_ready(calls[how]())


def test_beta_under_eqx_on_error_nan():
    code = (
        "import equinox as eqx, jax, jax.numpy as jnp, cakejax as cj\n"
        "bad = eqx.tree_at(lambda m: m.beta, cj.YeastActivity(), jnp.asarray(-1.0))\n"
        "print(float(bad(2.0)), float(jax.grad(lambda m: m(2.0))(bad).beta),\n"
        "      float(jax.grad(bad)(2.0)), float(cj.YeastActivity(2.0)(2.0)))\n"
    )
    value, d_beta, d_x, good = (float(t) for t in run_python(code, EQX_ON_ERROR="nan").split())
    assert np.isnan(value) and np.isnan(d_beta) and np.isnan(d_x)
    np.testing.assert_allclose(good, jax.nn.softplus(4.0) / 2, rtol=1e-6)


def test_per_neuron_beta_in_an_mlp_is_checked():
    # Equinox gives each neuron its own copy of an activation module: β of shape (32,) per
    # layer. One bad neuron is an error.
    mlp = eqx.nn.MLP(1, 1, 32, 2, activation=cj.YeastActivity(), key=jax.random.key(0))
    x = jnp.ones(1)
    assert np.isfinite(mlp(x)).all()
    assert mlp.activation.beta.shape == (2, 32)
    bad = eqx.tree_at(lambda m: m.activation.beta, mlp, mlp.activation.beta.at[1, 3].set(-0.5))
    with pytest.raises(eqx.EquinoxRuntimeError, match="field 'beta'"):
        eqx.filter_jit(bad)(x)
