"""Typed shapes: wrong shapes, ranks and dtypes are rejected with a message naming the
parameter (or field), eagerly and under jit."""

import os
import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest
from jaxtyping import TypeCheckError

import cakejax as cj


def like_model():
    return cj.LikeModel.init(jax.random.key(0), 3)


FEATURES = jnp.ones((4, 3))
LIKES = jnp.asarray([True, False, True, True])

# (call, the parameter the message must name, what it must say was expected)
BAD_CALLS = {
    "ingredients wrong shape": (lambda: cj.Deliciousness()(jnp.ones(3)), "ingredients", "'4'"),
    "ingredients wrong rank": (lambda: cj.CakeProperties()(jnp.ones((1, 4))), "ingredients",
                               "'4'"),
    "ingredients integer": (lambda: cj.CakeProperties()(jnp.arange(4)), "ingredients", "Float"),
    "ingredients complex": (lambda: cj.FluffinessLoss(True)(jnp.ones(4, complex)),
                            "ingredients", "Float"),
    "features wrong width": (lambda: like_model()(jnp.ones((4, 2))), "features",
                             "'cakes features'"),
    "features wrong rank": (lambda: like_model()(jnp.ones(3)), "features", "'cakes features'"),
    "likes not boolean": (lambda: cj.like_loss(like_model(), FEATURES, jnp.ones(4)), "likes",
                          "Bool"),
    "likes wrong length": (lambda: cj.like_loss(like_model(), FEATURES, LIKES[:3]), "likes",
                           "'cakes'"),
    "target not scalar": (lambda: cj.SweetnessError()(jnp.ones(4), jnp.ones(2)), "target",
                          "''"),
    "polynomial at an integer": (lambda: cj.Polynomial.cake_quality()(jnp.asarray(2)), "x",
                                 "Float"),
    "hvp direction shape": (lambda: cj.hvp(cj.Deliciousness(), jnp.ones(4), jnp.ones(3)), "v",
                            "'*shape'"),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_input_eager(case):
    call, parameter, expected = BAD_CALLS[case]
    with pytest.raises(TypeCheckError) as info:
        call()
    message = str(info.value)
    assert f"parameter '{parameter}'" in message
    assert expected in message


@pytest.mark.parametrize("jit", [jax.jit, eqx.filter_jit], ids=["jax.jit", "eqx.filter_jit"])
@pytest.mark.parametrize("case", ["ingredients wrong shape", "features wrong width"])
def test_bad_input_under_jit(case, jit):
    bad = {"ingredients wrong shape": (cj.Deliciousness(), jnp.ones(3)),
           "features wrong width": (like_model(), jnp.ones((4, 2)))}
    model, argument = bad[case]
    parameter = BAD_CALLS[case][1]
    with pytest.raises(TypeCheckError, match=f"parameter '{parameter}'"):
        jit(lambda m, a: m(a))(model, argument)


BAD_FIELDS = {
    "weights wrong rank": (lambda: cj.LikeModel(jnp.ones((3, 1)), 0.0), "weights"),
    "bias not scalar": (lambda: cj.LikeModel(jnp.ones(3), jnp.ones(2)), "bias"),
    "weights integer": (lambda: cj.LikeModel(jnp.arange(3), 0.0), "weights"),
    "coefficients complex": (lambda: cj.Polynomial(jnp.ones(3, complex)), "coeffs"),
    "exponents wrong shape": (lambda: cj.CakeProperties(cost_exponents=jnp.ones(3)),
                              "cost_exponents"),
    "ideal not scalar": (lambda: cj.Deliciousness(ideal_sweetness=jnp.ones(2)),
                         "ideal_sweetness"),
    "properties not a model": (lambda: cj.Deliciousness(properties=jnp.ones(3)), "properties"),
    "stop flag not bool": (lambda: cj.FluffinessLoss("yes"), "stop_target_gradient"),
}


@pytest.mark.parametrize("case", list(BAD_FIELDS))
def test_bad_field_at_construction(case):
    build, field = BAD_FIELDS[case]
    with pytest.raises(TypeCheckError, match=f"'{field}'"):
        build()


def test_python_scalars_and_numpy_arrays_are_accepted():
    import numpy as np

    assert cj.Polynomial.cake_quality()(2.0) == 11.0
    np.testing.assert_allclose(cj.CakeProperties()(np.asarray([1.0, 3.0, 2.0, 1.5])),
                               cj.CakeProperties()(jnp.asarray([1.0, 3.0, 2.0, 1.5])))
    # Python numbers in fields become arrays of the default float dtype.
    assert cj.Polynomial([1, 2, 3]).coeffs.dtype == jnp.float32


def test_switch_turns_off_argument_checks_but_not_field_checks():
    # CAKEJAX_TYPECHECK=0 removes the import hook's checks of arguments (an integer x then
    # reaches jnp.polyval), but a model's fields are checked whatever the switch says, at
    # construction and at call time.
    code = (
        "import equinox as eqx, jax.numpy as jnp, cakejax as cj\n"
        "print(cj.Polynomial.cake_quality()(jnp.asarray(2)))\n"
        "for build in (lambda: cj.LikeModel(jnp.ones(3), jnp.ones(2)),\n"
        "              lambda: cj.GradientClip(0.1, mode='bogus'),\n"
        "              lambda: eqx.tree_at(lambda m: m.beta, cj.YeastActivity(), jnp.ones(2))(1.0)):\n"
        "    try:\n"
        "        build()\n"
        "    except Exception as error:\n"
        "        print(type(error).__name__, error)\n"
    )
    env = {**os.environ, "CAKEJAX_TYPECHECK": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "11.0"
    assert lines[1].startswith("TypeCheckError LikeModel: field 'bias' must be Float[Array, '']")
    assert lines[2].startswith("TypeCheckError GradientClip: field 'mode' must be Literal")
    assert lines[3].startswith("TypeCheckError YeastActivity: field 'beta' must be Float")
