"""Typed shapes: wrong shapes, ranks and dtypes are rejected with a message naming the
parameter (or field), eagerly and under jit."""

import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import TypeCheckError

import cakejax as cj

from .helpers import run_python


def like_model():
    return cj.LikeModel.init(jax.random.key(0), 3)


FEATURES = jnp.ones((4, 3))
LIKES = jnp.asarray([True, False, True, True])

# (call, the parameter the message must name, what it must say was expected)
BAD_CALLS = {
    "ingredients wrong shape": (lambda: cj.Deliciousness()(jnp.ones(3)), "ingredients", "'4'"),
    "ingredients wrong rank": (lambda: cj.CakeProperties()(jnp.ones((1, 4))), "ingredients", "'4'"),
    "ingredients integer": (lambda: cj.CakeProperties()(jnp.arange(4)), "ingredients", "Float"),
    "ingredients complex": (
        lambda: cj.FluffinessLoss(True)(jnp.ones(4, complex)),
        "ingredients",
        "Float",
    ),
    "features wrong width": (
        lambda: like_model()(jnp.ones((4, 2))),
        "features",
        "'cakes features'",
    ),
    "features wrong rank": (lambda: like_model()(jnp.ones(3)), "features", "'cakes features'"),
    "likes not boolean": (
        lambda: cj.like_loss(like_model(), FEATURES, jnp.ones(4)),
        "likes",
        "Bool",
    ),
    "likes wrong length": (
        lambda: cj.like_loss(like_model(), FEATURES, LIKES[:3]),
        "likes",
        "'cakes'",
    ),
    "target not scalar": (lambda: cj.SweetnessError()(jnp.ones(4), jnp.ones(2)), "target", "''"),
    "polynomial at an integer": (
        lambda: cj.Polynomial.cake_quality()(jnp.asarray(2)),
        "x",
        "Float",
    ),
    "hvp direction shape": (
        lambda: cj.hvp(cj.Deliciousness(), jnp.ones(4), jnp.ones(3)),
        "v",
        "'*shape'",
    ),
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
    bad = {
        "ingredients wrong shape": (cj.Deliciousness(), jnp.ones(3)),
        "features wrong width": (like_model(), jnp.ones((4, 2))),
    }
    model, argument = bad[case]
    parameter = BAD_CALLS[case][1]
    with pytest.raises(TypeCheckError, match=f"parameter '{parameter}'"):
        jit(lambda m, a: m(a))(model, argument)


BAD_FIELDS = {
    "weights wrong rank": (lambda: cj.LikeModel(jnp.ones((3, 1)), 0.0), "weights"),
    "bias not scalar": (lambda: cj.LikeModel(jnp.ones(3), jnp.ones(2)), "bias"),
    "weights integer": (lambda: cj.LikeModel(jnp.arange(3), 0.0), "weights"),
    "coefficients complex": (lambda: cj.Polynomial(jnp.ones(3, complex)), "coeffs"),
    "exponents wrong shape": (
        lambda: cj.CakeProperties(cost_exponents=jnp.ones(3)),
        "cost_exponents",
    ),
    "ideal not scalar": (lambda: cj.Deliciousness(ideal_sweetness=jnp.ones(2)), "ideal_sweetness"),
    "properties not a model": (lambda: cj.Deliciousness(properties=jnp.ones(3)), "properties"),
    "stop flag not bool": (lambda: cj.FluffinessLoss("yes"), "stop_target_gradient"),
}


@pytest.mark.parametrize("case", list(BAD_FIELDS))
def test_bad_field_at_construction(case):
    build, field = BAD_FIELDS[case]
    with pytest.raises(TypeCheckError, match=f"'{field}'"):
        build()


def test_python_scalars_and_numpy_arrays_are_accepted():
    assert cj.Polynomial.cake_quality()(2.0) == 11.0
    np.testing.assert_allclose(
        cj.CakeProperties()(np.asarray([1.0, 3.0, 2.0, 1.5])),
        cj.CakeProperties()(jnp.asarray([1.0, 3.0, 2.0, 1.5])),
    )
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
        "              lambda: eqx.tree_at(lambda m: m.beta, cj.YeastActivity(),\n"
        "                                  jnp.ones(2))(1.0)):\n"
        "    try:\n"
        "        build()\n"
        "    except Exception as error:\n"
        "        print(type(error).__name__, error)\n"
    )
    lines = run_python(code, CAKEJAX_TYPECHECK="0").strip().splitlines()
    assert lines[0] == "11.0"
    assert lines[1].startswith("TypeCheckError LikeModel: field 'bias' must be Float[Array, '']")
    assert lines[2].startswith("TypeCheckError GradientClip: field 'mode' must be Literal")
    assert lines[3].startswith("TypeCheckError YeastActivity: field 'beta' must be Float")


# Fields changed after construction (eqx.tree_at, an optimiser step, a checkpoint) are
# checked where the model is called: (model, field, a wrong value, the call).
X4 = jnp.asarray([1.0, 3.0, 2.0, 1.5])
CHANGED_FIELDS = {
    "cost_exponents (3,)": (cj.CakeProperties(), "cost_exponents", jnp.ones(3), lambda m: m(X4)),
    "sweetness_weights (1,)": (
        cj.CakeProperties(),
        "sweetness_weights",
        jnp.ones(1),
        lambda m: m.sweetness(X4),
    ),
    "sweetness_weights (4, 4)": (
        cj.CakeProperties(),
        "sweetness_weights",
        jnp.ones((4, 4)),
        lambda m: m(X4),
    ),
    "fluffiness_weights complex": (
        cj.CakeProperties(),
        "fluffiness_weights",
        jnp.ones(4, complex),
        lambda m: m.fluffiness(X4),
    ),
    "ideal_sweetness (2,)": (cj.Deliciousness(), "ideal_sweetness", jnp.ones(2), lambda m: m(X4)),
    "target_weights (3,)": (
        cj.FluffinessLoss(True),
        "target_weights",
        jnp.ones(3),
        lambda m: m(X4),
    ),
    "coeffs (2, 2)": (cj.Polynomial.cake_quality(), "coeffs", jnp.ones((2, 2)), lambda m: m(1.0)),
    "bias (3,)": (like_model(), "bias", jnp.ones(3), lambda m: m(FEATURES)),
    "real_weight integer": (
        cj.VibrationScore(),
        "real_weight",
        jnp.asarray(3),
        lambda m: m(1.0 + 1j),
    ),
    "base (2,)": (cj.FlavorStability(), "base", jnp.ones(2), lambda m: m(3.0)),
    "retention (2,)": (cj.DoughMaturity(0.75, 10.0), "retention", jnp.ones(2), lambda m: m(0.0)),
    "beta (2,)": (cj.YeastActivity(), "beta", jnp.ones(2), lambda m: m(1.0)),
}


@pytest.mark.parametrize("case", list(CHANGED_FIELDS))
@pytest.mark.parametrize(
    "jit", [None, jax.jit, eqx.filter_jit], ids=["eager", "jax.jit", "eqx.filter_jit"]
)
def test_fields_changed_after_construction_are_checked_where_called(case, jit):
    model, field, value, call = CHANGED_FIELDS[case]
    changed = eqx.tree_at(lambda m: getattr(m, field), model, value)
    run = call if jit is None else jit(call)
    with pytest.raises(TypeCheckError, match=f"{type(model).__name__}: field '{field}' must be"):
        run(changed)


@pytest.mark.parametrize("case", list(CHANGED_FIELDS))
def test_a_loaded_checkpoint_is_checked_where_called(case, tmp_path):
    # A checkpoint of the wrong shape read into a model of the wrong skeleton: the model
    # is only as good as what was loaded.
    model, field, value, call = CHANGED_FIELDS[case]
    changed = eqx.tree_at(lambda m: getattr(m, field), model, value)
    path = tmp_path / "model.eqx"
    eqx.tree_serialise_leaves(path, changed)
    loaded = eqx.tree_deserialise_leaves(path, changed)
    with pytest.raises(TypeCheckError, match=f"field '{field}'"):
        call(loaded)


# Bad construction: each error names the model, the field, what was expected and what came.
BAD_CONSTRUCTION = {
    "beta a vector": (
        lambda: cj.YeastActivity(jnp.ones(2)),
        TypeCheckError,
        r"YeastActivity: field 'beta' must be Float\[Array, ''\], got float32\[2\]",
    ),
    "beta complex": (
        lambda: cj.YeastActivity(1j),
        TypeCheckError,
        r"YeastActivity: field 'beta' must be Float\[Array, ''\], got complex",
    ),
    "bound a vector": (
        lambda: cj.GradientClip(jnp.asarray([0.1, 0.2])),
        TypeError,
        r"GradientClip: field 'bound' must be a real number, got float32\[2\]",
    ),
    "bound a string": (
        lambda: cj.GradientClip("abc"),
        TypeError,
        r"GradientClip: field 'bound' must be a real number, got str 'abc'",
    ),
    "bound complex": (
        lambda: cj.GradientClip(1j),
        TypeError,
        r"GradientClip: field 'bound' must be a real number, got complex",
    ),
    "coeffs a string": (
        lambda: cj.Polynomial("abc"),
        TypeCheckError,
        r"Polynomial: field 'coeffs' must be Float\[Array, 'terms'\], got str",
    ),
    "coeffs ragged": (
        lambda: cj.Polynomial([1.0, [2.0, 3.0]]),
        TypeCheckError,
        r"Polynomial: field 'coeffs' must be Float\[Array, 'terms'\], got list",
    ),
    "bound traced": (
        lambda: jax.jit(lambda b: cj.GradientClip(b)(X4))(0.1),
        TypeError,
        r"GradientClip: field 'bound' is a static hyperparameter and must be a "
        r"concrete number, got a traced value",
    ),
    "scale traced": (
        lambda: jax.jit(lambda s: cj.GradientScale(s)(X4))(0.1),
        TypeError,
        r"GradientScale: field 'scale' is a static hyperparameter",
    ),
    "scale infinite": (
        lambda: cj.GradientReversal(float("inf")),
        ValueError,
        r"GradientReversal: field 'scale' must be finite, got inf",
    ),
    "mask not boolean": (
        lambda: cj.GradientClip(0.1, mask=[1.0, 0.0]),
        TypeCheckError,
        r"GradientClip: field 'mask' must be a boolean array \(or None\), "
        r"got float64\[2\]",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CONSTRUCTION))
def test_bad_construction_names_the_field(case):
    build, error, message = BAD_CONSTRUCTION[case]
    with pytest.raises(error, match=message):
        build()


def test_bad_mode_is_refused_with_type_checks_off():
    code = (
        "import cakejax as cj\n"
        "try:\n    cj.GradientClip(0.1, mode='bogus')\n"
        "except Exception as error:\n    print(type(error).__name__, error)\n"
    )
    out = run_python(code, CAKEJAX_TYPECHECK="0")
    assert out.startswith(
        "TypeCheckError GradientClip: field 'mode' must be Literal['value', 'norm'], got str "
        "'bogus'"
    ), out


#: The hyperparameter checks of the solvers, adjoints and FixedPoint (plain eqx.Modules, whose
#: `__check_init__` and converters do all the checking): code, and what the error must say.
HYPERPARAMETERS = {
    "Newton linear_rtol str": (
        "cj.Newton(linear_rtol='abc')",
        r"Newton: field 'linear_rtol' must be a real number",
    ),
    "Newton linear_rtol 2": (
        "cj.Newton(linear_rtol=2.0)",
        r"Newton: linear_rtol must be a finite number > 0 and < 1",
    ),
    "Newton linear_steps 1.5": (
        "cj.Newton(linear_steps=1.5)",
        r"Newton: linear_steps must be an int >= 1",
    ),
    "Anderson history 0": ("cj.Anderson(history=0)", r"Anderson: history must be an int >= 1"),
    "Anderson damping str": (
        "cj.Anderson(damping='x')",
        r"Anderson: field 'damping' must be a real number",
    ),
    "Anderson regularisation nan": (
        "cj.Anderson(regularisation=float('nan'))",
        r"Anderson: regularisation must be a finite number >= 0",
    ),
    "Picard damping 0": ("cj.Picard(0.0)", r"Picard: damping must be a finite number > 0 and <= 1"),
    "Picard damping str": ("cj.Picard('x')", r"Picard: field 'damping' must be a real number"),
    "FixedPoint rtol -1": (
        "cj.FixedPoint(abs, rtol=-1.0)",
        r"FixedPoint: rtol must be a finite number >= 0",
    ),
    "FixedPoint rtol str": (
        "cj.FixedPoint(abs, rtol='a')",
        r"FixedPoint: field 'rtol' must be a real number",
    ),
    "FixedPoint tolerances 0": (
        "cj.FixedPoint(abs, rtol=0.0)",
        r"FixedPoint: rtol and atol cannot both be 0",
    ),
    "FixedPoint rtol True": (
        "cj.FixedPoint(abs, rtol=True)",
        r"FixedPoint: field 'rtol' must be a real number, got bool",
    ),
    "FixedPoint max_steps 0": (
        "cj.FixedPoint(abs, max_steps=0)",
        r"FixedPoint: max_steps must be an int >= 1",
    ),
    "FixedPoint fn 3": ("cj.FixedPoint(3)", r"FixedPoint: field 'fn' must be callable"),
    "FixedPoint solver str": (
        "cj.FixedPoint(abs, solver='newton')",
        r"FixedPoint: field 'solver' must be a cakejax solver",
    ),
    "FixedPoint adjoint str": (
        "cj.FixedPoint(abs, adjoint='implicit')",
        r"FixedPoint: field 'adjoint' must be cj.Implicit\(\)",
    ),
    "Implicit bogus": ("cj.Implicit('bogus')", r"Implicit: linear_solver must be 'auto', 'gmres'"),
    "Implicit restart 0": ("cj.Implicit(restart=0)", r"Implicit: restart must be an int >= 1"),
    "Phantom terms 0": ("cj.Phantom(0)", r"Phantom: terms must be an int >= 1"),
}


@pytest.mark.parametrize("case", list(HYPERPARAMETERS))
def test_hyperparameters_are_checked(case):
    # With type checks on, jaxtyping's check of __init__ may speak first: it names the class
    # and the parameter; otherwise the module's own message.
    code, message = HYPERPARAMETERS[case]
    model = re.match(r"cj\.(\w+)\(", code).group(1)
    with pytest.raises((TypeError, ValueError)) as info:
        eval(code, {"cj": cj})
    text = str(info.value)
    hooked = isinstance(info.value, TypeCheckError) and f"{model}.__init__" in text
    assert re.search(message, text) or hooked, text


def test_hyperparameters_are_checked_with_type_checks_off():
    # The same checks, whatever CAKEJAX_TYPECHECK says: they are the modules' own.
    code = (
        "import cakejax as cj\n"
        f"for name, (code, _) in {HYPERPARAMETERS!r}.items():\n"
        "    try:\n        eval(code)\n        print(name, '|', 'accepted')\n"
        "    except Exception as error:\n        print(name, '|', error)\n"
    )
    lines = run_python(code, CAKEJAX_TYPECHECK="0").strip().splitlines()
    assert len(lines) == len(HYPERPARAMETERS)
    for line in lines:
        name, error = line.split(" | ", 1)
        assert re.search(HYPERPARAMETERS[name][1], error), line


def test_python_ints_where_numbers_are_taken(x64):
    dtype = jnp.result_type(float)
    assert cj.Polynomial.cake_quality()(2) == 11.0
    np.testing.assert_array_equal(
        cj.ingredients(butter=1, eggs=3, flour=2, sugar=1), jnp.asarray([1.0, 3.0, 2.0, 1.0], dtype)
    )
    assert cj.FlavorStability()(3) == 10.0
    assert cj.SweetnessError()(X4.astype(dtype), 10) == cj.SweetnessError()(X4.astype(dtype), 10.0)
    assert cj.YeastActivity()(2) == cj.YeastActivity()(2.0)
    assert cj.GradientScale(2)(1).dtype == dtype
    assert jax.grad(cj.Polynomial.cake_quality())(1.0) == 4.0
    # A bool is not a number here.
    with pytest.raises(TypeCheckError):
        cj.Polynomial.cake_quality()(True)


def test_realify_takes_numpy_arrays():
    f = cj.realify(lambda z: z**2)
    np.testing.assert_allclose(f(np.asarray([[2.0, 1.0]])), [[3.0, 4.0]])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize(
    "call",
    [
        lambda v: cj.Polynomial.cake_quality()(v),
        lambda v: cj.FlavorStability()(v),
        lambda v: cj.SweetnessError()(X4, v),
        lambda v: cj.VibrationScore()(v + 1j),
        lambda v: cj.SmoothMagic()(v * 1j),
        lambda v: cj.TrickyMagic()(v + 0j),
        lambda v: cj.like_loss(like_model(), FEATURES.at[1, 2].set(v), LIKES),
    ],
    ids=[
        "Polynomial",
        "FlavorStability",
        "SweetnessError",
        "VibrationScore",
        "SmoothMagic",
        "TrickyMagic",
        "LikeModel",
    ],
)
def test_non_finite_inputs_are_errors(call, bad):
    with pytest.raises(eqx.EquinoxRuntimeError, match="NaN or inf|NaN or infinite"):
        call(bad)
    with pytest.raises(eqx.EquinoxRuntimeError, match="NaN or inf|NaN or infinite"):
        eqx.filter_jit(call)(bad)
