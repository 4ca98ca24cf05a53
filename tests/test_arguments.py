"""Every public count and tolerance argument rejects what it must (bools, negatives, NaN,
infinities, strings, floats for counts) with an error that names the function and the
argument; fields swapped after construction are caught where the model is used; empty input
and odd layers get errors that say what to do (issue 31)."""

import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, strategies as st
from jax.sharding import Mesh

import cakejax as cj
from cakejax._arguments import count, tolerance
from cakejax.examples import EXAMPLES, like_problem, tanh_contraction
from cakejax.testing import check_layer

from .helpers import run_python


def _product(p, e):
    return p * e


def _score(x):
    return -jnp.sum((x - 1.0) ** 2)


_X = jnp.ones(2)
_MESH = Mesh(np.array(jax.devices()), ("customers",))
_SCORES = eqx.filter_vmap(lambda s: cj.Deliciousness(ideal_sweetness=s))(jnp.full(1, 10.0))

#: (owner, argument, call with the argument set to `v`, smallest valid count) for counts.
COUNTS = {
    "nth_derivative n": ("nth_derivative", "n", lambda v: cj.nth_derivative(jnp.sin, v), 0),
    "optimise_recipe max_steps": (
        "optimise_recipe",
        "max_steps",
        lambda v: cj.optimise_recipe(_score, _X, max_steps=v),
        1,
    ),
    "optimise_recipes max_steps": (
        "optimise_recipe",
        "max_steps",
        lambda v: cj.optimise_recipes(_SCORES, jnp.ones(4), max_steps=v),
        1,
    ),
    "FixedPoint max_steps": (
        "FixedPoint",
        "max_steps",
        lambda v: cj.FixedPoint(abs, max_steps=v),
        1,
    ),
    "Anderson history": ("Anderson", "history", lambda v: cj.Anderson(history=v), 1),
    "Newton linear_steps": ("Newton", "linear_steps", lambda v: cj.Newton(linear_steps=v), 1),
    "Implicit restart": ("Implicit", "restart", lambda v: cj.Implicit(restart=v), 1),
    "Phantom terms": ("Phantom", "terms", lambda v: cj.Phantom(terms=v), 1),
    "LikeModel.init n_features": (
        "LikeModel.init",
        "n_features",
        lambda v: cj.LikeModel.init(jax.random.key(0), v),
        1,
    ),
    "tanh_contraction n": ("tanh_contraction", "n", lambda v: tanh_contraction(v), 1),
    "like_problem d": ("like_problem", "d", lambda v: like_problem(v), 1),
    "like_problem cakes": ("like_problem", "cakes", lambda v: like_problem(3, v), 1),
    "customers_from_processes processes": (
        "customers_from_processes",
        "processes",
        lambda v: cj.customers_from_processes(_SCORES, _MESH, processes=v),
        1,
    ),
}

#: The same for tolerances: (owner, argument, call, whether 0 is refused too).
TOLERANCES = {
    "clipped_mean_grad max_norm": (
        "clipped_mean_grad",
        "max_norm",
        lambda v: cj.clipped_mean_grad(
            lambda p, e: p * e, jnp.asarray(1.0), jnp.ones(3), max_norm=v
        ),
        True,
    ),
    "is_holomorphic rtol": (
        "is_holomorphic",
        "rtol",
        lambda v: cj.is_holomorphic(jnp.sin, 1j, rtol=v),
        False,
    ),
    "is_holomorphic atol": (
        "is_holomorphic",
        "atol",
        lambda v: cj.is_holomorphic(jnp.sin, 1j, atol=v),
        False,
    ),
    "holomorphic_grad rtol": (
        "holomorphic_grad",
        "rtol",
        lambda v: cj.holomorphic_grad(jnp.sin, rtol=v),
        False,
    ),
    "holomorphic_grad atol": (
        "holomorphic_grad",
        "atol",
        lambda v: cj.holomorphic_grad(jnp.sin, atol=v),
        False,
    ),
    "check_layer rtol": ("check_layer", "rtol", lambda v: check_layer(jnp.sin, 0.5, rtol=v), True),
    "optimise_recipe rtol": (
        "optimise_recipe",
        "rtol",
        lambda v: cj.optimise_recipe(_score, _X, rtol=v),
        True,
    ),
    "FixedPoint rtol": (
        "FixedPoint",
        "rtol",
        lambda v: cj.FixedPoint(abs, rtol=v, atol=1e-6),
        False,
    ),
    "FixedPoint atol": ("FixedPoint", "atol", lambda v: cj.FixedPoint(abs, atol=v), False),
    "Anderson damping": ("Anderson", "damping", lambda v: cj.Anderson(damping=v), True),
    "Anderson regularisation": (
        "Anderson",
        "regularisation",
        lambda v: cj.Anderson(regularisation=v),
        False,
    ),
    "Picard damping": ("Picard", "damping", lambda v: cj.Picard(damping=v), True),
    "Newton linear_rtol": ("Newton", "linear_rtol", lambda v: cj.Newton(linear_rtol=v), True),
}

BAD_COUNTS = {
    "True": True,
    "False": False,
    "-1": -1,
    "2.5": 2.5,
    "2.0": 2.0,
    "1e5": 1e5,
    "'3'": "3",
    "nan": math.nan,
    "int array": np.ones(2, int),
    "None": None,
}
BAD_TOLERANCES = {
    "True": True,
    "-1.0": -1.0,
    "-1": -1,
    "nan": math.nan,
    "inf": math.inf,
    "'a'": "a",
    "1j": 1j,
    "array": np.ones(2),
}


def _assert_refused(call, owner, argument):
    """`call()` raises a TypeError or ValueError naming the argument (jaxtyping's check of the
    arguments, on by default, names the function and the parameter; cakejax's own message
    names both and says what is expected)."""
    with pytest.raises((TypeError, ValueError)) as info:
        call()
    text = str(info.value)
    assert argument in text and owner in text, text


@pytest.mark.parametrize("bad", list(BAD_COUNTS))
@pytest.mark.parametrize("case", list(COUNTS))
def test_counts_are_checked(case, bad):
    owner, argument, call, minimum = COUNTS[case]
    value = BAD_COUNTS[bad]
    # None is the documented default of processes and of Anderson's history.
    if value is None and argument in ("processes", "history"):
        return
    _assert_refused(lambda: call(value), owner, argument)
    if minimum == 1:
        _assert_refused(lambda: call(0), owner, argument)


@pytest.mark.parametrize("bad", list(BAD_TOLERANCES))
@pytest.mark.parametrize("case", list(TOLERANCES))
def test_tolerances_are_checked(case, bad):
    owner, argument, call, positive = TOLERANCES[case]
    _assert_refused(lambda: call(BAD_TOLERANCES[bad]), owner, argument)
    if positive:
        _assert_refused(lambda: call(0.0), owner, argument)


@given(st.integers(-(2**40), 2**40), st.integers(0, 3))
def test_count_property(value, minimum):
    if value >= minimum:
        assert count("f", "n", value, minimum=minimum) == value
        assert (
            count(
                "f",
                "n",
                np.int32(min(max(value, -(2**31)), 2**31 - 1)) if abs(value) < 2**31 else value,
                minimum=minimum,
            )
            == value
        )
    else:
        with pytest.raises(ValueError, match=f"f: n must be an int >= {minimum}, got {value}"):
            count("f", "n", value, minimum=minimum)


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_count_refuses_every_float(value):
    with pytest.raises(TypeError, match="f: n must be an int >= 1, got float"):
        count("f", "n", value)


@given(st.floats(allow_nan=True, allow_infinity=True), st.booleans())
def test_tolerance_property(value, positive):
    valid = math.isfinite(value) and (value > 0 if positive else value >= 0)
    if valid:
        assert tolerance("f", "tol", value, positive=positive) == value
        assert tolerance("f", "tol", np.float64(value), positive=positive) == value
    else:
        with pytest.raises(ValueError, match="f: tol must be a finite number"):
            tolerance("f", "tol", value, positive=positive)


def test_counts_and_tolerances_refuse_traced_values():
    with pytest.raises(TypeError, match="f: n must be a concrete int, got a traced value"):
        jax.jit(lambda n: count("f", "n", n))(3)
    with pytest.raises(TypeError, match="f: tol must be a concrete number, got a traced"):
        jax.jit(lambda t: tolerance("f", "tol", t))(0.5)


# Fields swapped after construction (eqx.tree_at skips __init__ and its checks).

_FP = cj.FixedPoint(lambda x: 0.5 * x + 1.0)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("fn", 3.0, "FixedPoint: field 'fn' must be callable"),
        ("fn", None, "FixedPoint: field 'fn' must be callable"),
        ("solver", 3.0, "FixedPoint: field 'solver' must be a cakejax solver"),
        ("solver", cj.Implicit(), "FixedPoint: field 'solver' must be a cakejax solver"),
        ("solver", None, "FixedPoint: field 'solver' must be a cakejax solver"),
        ("adjoint", cj.Picard(), "FixedPoint: field 'adjoint' must be cj.Implicit()"),
        ("adjoint", None, "FixedPoint: field 'adjoint' must be cj.Implicit()"),
        ("adjoint", 3.0, "FixedPoint: field 'adjoint' must be cj.Implicit()"),
    ],
)
def test_fixed_point_fields_swapped_after_construction(field, value, message):
    swapped = eqx.tree_at(lambda f: getattr(f, field), _FP, value, is_leaf=lambda x: x is None)
    for use in (swapped, swapped.solve, jax.jit(swapped)):
        with pytest.raises(TypeError, match=message.replace("(", r"\(").replace(")", r"\)")):
            use(0.0)


@pytest.mark.parametrize("value", [3.0, None, "round"])
def test_straight_through_fn_swapped(value):
    swapped = eqx.tree_at(
        lambda s: s.fn, cj.StraightThrough(jnp.round), value, is_leaf=lambda x: x is None
    )
    with pytest.raises(TypeError, match="StraightThrough: field 'fn' must be Callable"):
        swapped(1.5)


class _WrongShape(cj.Picard):
    """A user's solver whose step returns the wrong shape."""

    def step(self, f, x, fx, state):
        return jnp.concatenate([fx, fx]), state


def test_user_solver_with_wrong_step_shape():
    with pytest.raises(TypeError, match=r"FixedPoint: the solver _WrongShape's step returned"):
        cj.FixedPoint(lambda x: 0.5 * x + 1.0, solver=_WrongShape())(jnp.zeros(3))


# Empty input.


def test_empty_inputs():
    with pytest.raises(ValueError, match="optimise_recipe: x0 is empty"):
        cj.optimise_recipe(_score, jnp.zeros(0))
    nobody = eqx.filter_vmap(lambda s: cj.Deliciousness(ideal_sweetness=s))(jnp.zeros(0))
    for mesh in (None, _MESH):
        with pytest.raises(ValueError, match="optimise_recipes: there are no customers"):
            cj.optimise_recipes(nobody, jnp.ones(4), mesh=mesh)
    with pytest.raises(ValueError, match="customers_from_processes: there are no customers"):
        cj.customers_from_processes(nobody, _MESH)
    with pytest.raises(ValueError, match="clipped_mean_grad: the batch is empty"):
        cj.clipped_mean_grad(lambda p, e: p * e, jnp.asarray(1.0), jnp.ones(0), max_norm=1.0)


# check_layer on what it cannot check.


@pytest.mark.parametrize(
    "layer, message",
    [
        (3.0, "check_layer: layer must be callable"),
        (lambda x: "cake", "check_layer: the layer must return an inexact"),
        (lambda x: None, "check_layer: the layer must return an inexact"),
        (lambda x: jnp.round(x).astype(jnp.int32), "check_layer: the layer must return an inexact"),
    ],
)
def test_check_layer_refuses_what_it_cannot_check(layer, message):
    with pytest.raises(TypeError, match=message):
        check_layer(layer, jnp.asarray(0.5))


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_check_layer_refuses_half_precision(dtype):
    """A rule 1 % off would pass at half precision: refused, with the cure."""
    wrong = jax.custom_jvp(jnp.sin)
    wrong.defjvp(lambda p, t: (jnp.sin(p[0]), 1.01 * jnp.cos(p[0]) * t[0]))
    with pytest.raises(
        TypeError, match=f"check_layer: the layer computes in {jnp.dtype(dtype).name}.*float32"
    ):
        check_layer(wrong, jnp.asarray(0.5, dtype))


def test_check_layer_failure_says_absolute_and_relative():
    wrong = jax.custom_jvp(jnp.sin)
    wrong.defjvp(lambda p, t: (jnp.sin(p[0]), 1.01 * jnp.cos(p[0]) * t[0]))
    report = check_layer(wrong, jnp.asarray(0.5))
    detail = report.checks["finite differences, 1st order"].detail
    assert report.checks["finite differences, 1st order"].status == "wrong"
    assert "largest absolute error" in detail and "relative to the largest |value|" in detail, (
        detail
    )
    # 1 % off: the relative error printed is 0.01.
    relative = float(detail.split("; ")[1].split(" relative")[0])
    assert relative == pytest.approx(0.01 / 1.01, rel=0.05), detail


# Smaller ones.


def test_complex_helpers_at_bad_points():
    with pytest.raises(
        TypeError, match="ascent_direction: f must return a real scalar.*holomorphic_grad"
    ):
        cj.ascent_direction(cj.SmoothMagic(), 2 + 1j)
    for call in (
        lambda: cj.is_holomorphic(jnp.sin, complex(math.nan, 1.0)),
        lambda: cj.holomorphic_grad(jnp.sin)(complex(math.nan, 0.0)),
    ):
        with pytest.raises(eqx.EquinoxRuntimeError, match="derivatives at z are not finite"):
            call()
    assert bool(cj.is_holomorphic(jnp.sin, 1.0 + 1j))  # still answers at a finite point


@pytest.mark.parametrize("scale", ["a", True, jnp.ones(2), None])
def test_scale_gradient_bad_scale(scale):
    with pytest.raises(TypeError, match="scale"):
        cj.scale_gradient(jnp.asarray(1.0), scale)


def test_own_messages_with_type_checks_off():
    """With `CAKEJAX_TYPECHECK=0` (no jaxtyping check of the arguments), every bad count and
    tolerance above still gets cakejax's own message: the function, the argument, what it
    must be."""
    code = (
        "import re\n"
        "from tests.test_arguments import BAD_COUNTS, BAD_TOLERANCES, COUNTS, TOLERANCES\n"
        "for table, bads in ((COUNTS, BAD_COUNTS), (TOLERANCES, BAD_TOLERANCES)):\n"
        "    for case, (owner, argument, call, _) in table.items():\n"
        "        for bad, value in bads.items():\n"
        "            if value is None and argument in ('processes', 'history'):\n"
        "                continue\n"
        "            try:\n"
        "                call(value)\n"
        "            except (TypeError, ValueError) as error:\n"
        "                own = re.search(rf\"{owner}: (field '{argument}'|{argument}) must be\","
        " str(error))\n"
        "                if not own:\n"
        "                    print(case, bad, type(error).__name__, error)\n"
        "            else:\n"
        "                print(case, bad, 'accepted')\n"
    )
    assert run_python(code, CAKEJAX_TYPECHECK="0") == ""


@pytest.mark.parametrize(
    "owner, call",
    [
        ("hvp", lambda: cj.hvp(lambda x: 2 * x, jnp.ones(3), jnp.ones(3))),
        ("nth_derivative", lambda: cj.nth_derivative(lambda x: jnp.stack([x, x]), 2)(1.0)),
        (
            "per_example_grad",
            lambda: cj.per_example_grad(lambda x, b: x * b, jnp.ones(3), jnp.ones((4, 3))),
        ),
        (
            "clipped_mean_grad",
            lambda: cj.clipped_mean_grad(_product, jnp.ones(3), jnp.ones((4, 3)), max_norm=1.0),
        ),
    ],
)
def test_derivative_tools_name_a_vector_loss(owner, call):
    """Not JAX's "Gradient only defined for scalar-output functions": the tool, what f gave,
    and what to do."""
    with pytest.raises(TypeError, match=rf"{owner}: f must return a real scalar .*float32\[\d\]"):
        call()


def test_optimise_recipes_unknown_option():
    with pytest.raises(TypeError, match=r"optimise_recipes: unknown option\(s\) \['bogus'\]"):
        cj.optimise_recipes(_SCORES, jnp.ones(4), bogus=1)


@pytest.mark.parametrize("example", list(EXAMPLES))
def test_every_field_swapped_is_named(example):
    """Each array or module field of every model and layer of the course, swapped with
    `eqx.tree_at` for a number, `None`, a string, a wrong module or an array of another
    shape: calling the model raises an error that names the model and the field, or (a
    swap that is valid: one solver for another) solves or says why it cannot (Picard
    iteration does not find the repelling fixed point that Newton was given)."""
    model, inputs = EXAMPLES[example].build()
    fields = [f.name for f in dataclasses.fields(model) if not f.metadata.get("static", False)]
    for field in fields:
        for value in (3.0, None, "x", cj.Picard(), jnp.ones((2, 3))):
            swapped = eqx.tree_at(
                lambda m, field=field: getattr(m, field), model, value, is_leaf=lambda x: x is None
            )
            if field == "solver" and isinstance(value, cj.AbstractFixedPointSolver):
                try:  # a valid configuration: it solves, or says why it cannot
                    swapped(*inputs)
                except eqx.EquinoxRuntimeError as error:
                    assert "Picard" in str(error) or "diverged" in str(error), str(error)
                continue
            with pytest.raises((TypeError, ValueError)) as info:
                jax.block_until_ready(swapped(*inputs))
            text = str(info.value)
            assert type(model).__name__ in text and f"'{field}'" in text, (field, value, text)
