"""Checkpoints keep what Equinox's leaves leave out: a template whose static fields, functions
or shapes differ from the saved model's is refused with the differences named (issue 31)."""

import io
import json

import equinox as eqx
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given

import cakejax as cj
from cakejax._checkpoint import fingerprint

from .helpers import run_python


def _model(mask=(True, False, True, False), bound=0.1, history=5, retention=0.5):
    return {
        "clip": cj.GradientClip(bound, mask=list(mask)),
        "fixed": cj.FixedPoint(cj.DoughMaturity(retention, 1.0), solver=cj.Anderson(history)),
        "yeast": cj.YeastActivity(2.0),
        "round": cj.StraightThrough(jnp.round),
    }


def _saved(model) -> io.BytesIO:
    file = io.BytesIO()
    cj.save_checkpoint(file, model)
    file.seek(0)
    return file


def test_round_trip(tmp_path):
    model = _model()
    template = _model(retention=0.1)  # arrays differ: they are what is saved
    template = eqx.tree_at(lambda m: m["yeast"].beta, template, jnp.asarray(7.0))
    path = tmp_path / "model.eqx"
    cj.save_checkpoint(path, model)
    loaded = cj.load_checkpoint(path, template)
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(model), strict=True):
        np.testing.assert_array_equal(a, b)
    assert float(loaded["fixed"](0.0)) == pytest.approx(float(model["fixed"](0.0)))


def test_optimiser_state_round_trip():
    model = _model()
    optimiser = optax.adam(1e-3)
    state = optimiser.init(eqx.filter(model, eqx.is_inexact_array))
    loaded = cj.load_checkpoint(_saved((model, state)), (model, state))
    assert jax.tree.structure(loaded) == jax.tree.structure((model, state))


@pytest.mark.parametrize(
    "changed, path",
    [
        (dict(mask=(True, True, True, False)), "['clip'].mask"),
        (dict(bound=0.2), "['clip'].bound"),
        (dict(history=20), "['fixed'].solver.history"),
    ],
)
def test_static_fields_that_differ_are_named(changed, path):
    file = _saved(_model())
    with pytest.raises(ValueError, match="the template does not match") as info:
        cj.load_checkpoint(file, _model(**changed))
    lines = str(info.value).splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == [path], lines


def _swap(where, value):
    return lambda m: eqx.tree_at(where, m, value)


@pytest.mark.parametrize(
    "change, path",
    [
        (_swap(lambda m: m["clip"], cj.GradientClip(0.1, mode="norm")), "['clip'].mode"),
        (_swap(lambda m: m["fixed"].solver, cj.Picard()), "['fixed'].solver"),
        (_swap(lambda m: m["fixed"].adjoint, cj.Phantom(3)), "['fixed'].adjoint"),
        (_swap(lambda m: m["round"].fn, jnp.floor), "['round'].fn"),
        (_swap(lambda m: m["yeast"].beta, jnp.ones(3)), "['yeast'].beta"),
        (lambda m: {**m, "extra": cj.YeastActivity(1.0)}, "(the model)"),
    ],
)
def test_modules_functions_and_shapes_that_differ_are_named(change, path):
    file = _saved(_model())
    with pytest.raises(ValueError, match="the template does not match") as info:
        cj.load_checkpoint(file, change(_model()))
    assert f"  {path}" in str(info.value), str(info.value)


@given(
    st.lists(st.booleans(), min_size=3, max_size=3),
    st.lists(st.booleans(), min_size=3, max_size=3),
    st.sampled_from([0.1, 0.5, 1e-12, 1e12]),
    st.sampled_from([0.1, 0.5, 1e-12, 1e12]),
)
def test_loading_refuses_exactly_the_templates_that_differ(mask_a, mask_b, bound_a, bound_b):
    saved = _saved(cj.GradientClip(bound_a, mask=mask_a))
    template = cj.GradientClip(bound_b, mask=mask_b)
    if mask_a == mask_b and bound_a == bound_b:
        cj.load_checkpoint(saved, template)
    else:
        with pytest.raises(ValueError, match="the template does not match"):
            cj.load_checkpoint(saved, template)


def test_a_file_of_equinox_leaves_alone_is_refused():
    file = io.BytesIO()
    eqx.tree_serialise_leaves(file, _model())
    file.seek(0)
    with pytest.raises(ValueError, match="is not a cakejax checkpoint.*tree_deserialise_leaves"):
        cj.load_checkpoint(file, _model())


def test_the_fingerprint_is_the_same_in_another_process():
    """No memory addresses, nothing that depends on the process: a checkpoint saved by one
    process loads in another."""
    mine = fingerprint(_model())
    code = (
        "import json\n"
        "from cakejax._checkpoint import fingerprint\n"
        "from tests.test_checkpoint import _model\n"
        "print(json.dumps(fingerprint(_model())))\n"
    )
    assert json.loads(run_python(code)) == mine
    assert not any(" at 0x" in text for text in mine.values())
