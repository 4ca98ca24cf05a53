"""cakejax.testing: it catches wrong derivative rules, and passes cakejax's own layers (which
this suite checks with it)."""

import dataclasses
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import pytest

import cakejax as cj
from cakejax import examples
from cakejax.testing import assert_layer, check_layer, check_transforms, TRANSFORMS


X = jnp.asarray([0.3, -1.0, 2.0])


def _wrong_jvp():
    @jax.custom_jvp
    def f(x):
        return jnp.sin(x)

    f.defjvp(lambda p, t: (f(p[0]), 1.01 * jnp.cos(p[0]) * t[0]))  # 1% off
    return f


def _wrong_vjp_shape():
    @jax.custom_vjp
    def f(x):
        return jnp.sin(x)

    f.defvjp(lambda x: (f(x), x), lambda x, g: (jnp.sum(g * jnp.cos(x))[None],))
    return f


def _wrong_vjp_value():
    @jax.custom_vjp
    def f(x):
        return jnp.sin(x)

    f.defvjp(lambda x: (f(x), x), lambda x, g: (g * jnp.cos(2 * x),))
    return f


def _wrong_second_order():
    # Right at first order; the stop_gradient makes the rule's own derivative zero.
    @jax.custom_jvp
    def f(x):
        return jnp.sin(x)

    f.defjvp(lambda p, t: (f(p[0]), jnp.cos(jax.lax.stop_gradient(p[0])) * t[0]))
    return f


def _inconsistent_jvp_vjp():
    # A custom_jvp whose rule is not linear in the tangent: jvp and its transpose disagree.
    @jax.custom_jvp
    def f(x):
        return jnp.sin(x)

    f.defjvp(lambda p, t: (f(p[0]), jnp.cos(p[0]) * t[0] + 0.1 * t[0] ** 2))
    return f


@pytest.mark.parametrize(
    "make, failing",
    [
        (_wrong_jvp, "finite differences, 1st order"),
        (_wrong_vjp_value, "finite differences, 1st order"),
        (_wrong_second_order, "finite differences, 2nd order"),
    ],
    ids=["custom_jvp 1% off", "custom_vjp wrong value", "right 1st order, wrong 2nd"],
)
def test_catches_a_wrong_rule(x64, make, failing):
    report = check_layer(make(), X)
    assert not report.ok
    assert report.checks[failing].status == "wrong", report
    with pytest.raises(AssertionError, match=failing):
        assert_layer(make(), X)


def test_catches_a_custom_vjp_with_a_wrong_cotangent_shape():
    report = check_layer(_wrong_vjp_shape(), X)
    assert not report.ok
    for transform in ("grad", "jacrev"):
        assert report.transforms[transform].status == "crash"
        assert "Custom VJP bwd rule must produce" in report.transforms[transform].detail
    # Forward mode of a custom_vjp is JAX's clear refusal, not a failure.
    assert report.transforms["jvp"].status == "refuses"
    assert "crash" in str(report)


def test_catches_a_tangent_map_that_is_not_linear():
    # Forward mode runs; reverse mode cannot transpose it: a crash, not a refusal.
    report = check_layer(_inconsistent_jvp_vjp(), X)
    assert report.transforms["jvp"].status == "works"
    assert report.transforms["grad"].status == "crash", report
    assert not report.ok


def test_passes_a_correct_custom_jvp_at_every_scale(x64):
    for scale in (1e-12, 1.0, 1e12):
        assert_layer(lambda x, s=scale: s * jnp.sin(x / s), scale * X)


# Every layer, and FixedPoint with its default and its Newton solver (the other solver and
# adjoint options are checked against finite differences in test_fixed_point_*).
_CHECKED = [n for n in examples.layers() if not n.startswith("FixedPoint,")] + [
    "FixedPoint, Newton (a repelling point)"
]


@pytest.mark.slow  # a sweep of the catalogue (each layer's own tests check its derivatives)
@pytest.mark.parametrize("name", _CHECKED)
def test_cakejax_layers_pass(f64, name):
    example = examples.EXAMPLES[name]
    layer, args = example.build()
    if isinstance(layer, cj.GradientClip):  # its reference derivative holds below the bound
        layer = cj.GradientClip(1e6, mask=layer.mask)
    if isinstance(layer, cj.FixedPoint):
        # Finite differences of an iterative solve see its tolerance divided by the step.
        layer = dataclasses.replace(layer, rtol=1e-13)
    assert_layer(layer, *args, reference=example.derivative, name=name)


@pytest.mark.parametrize("name", ["FixedPoint, Phantom (approximate)"])
def test_approximate_adjoints_are_reported_as_such(f64, name):
    layer, args = examples.EXAMPLES[name].build()
    report = check_layer(layer, *args)
    assert report.checks["finite differences, 1st order"].status == "wrong"


# FluffinessLoss(stopped)'s gradient is, by design, not the derivative finite differences see.
@pytest.mark.slow  # a sweep of the catalogue, as above
@pytest.mark.parametrize("name", [n for n in examples.models() if n != "FluffinessLoss(stopped)"])
def test_cakejax_models_pass_including_complex(f64, name):
    model, args = examples.EXAMPLES[name].build()
    assert_layer(model, *args)


def _smooth(dense: bool):
    """x ↦ tanh(roll(x)): a custom_jvp whose rule either forms the k × k Jacobian and
    multiplies (dense) or applies it matrix-free."""

    @jax.custom_jvp
    def f(x):
        return jnp.tanh(jnp.roll(x, 1))

    @f.defjvp
    def f_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        slope = 1 - f(x) ** 2
        if dense:
            return f(x), (jnp.roll(jnp.diag(slope), -1, axis=1) @ t)
        return f(x), slope * jnp.roll(t, 1)

    return f


def test_no_dense_jacobian(f64):
    x = jnp.linspace(-1.0, 1.0, 12)
    assert_layer(_smooth(dense=False), x, no_dense_jacobian=True)
    report = check_layer(_smooth(dense=True), x, no_dense_jacobian=True)
    assert report.checks["finite differences, 1st order"].status == "passes"  # right, but
    assert report.checks["no dense Jacobian"].status == "wrong"  # dense
    assert "(12, 12)" in report.checks["no dense Jacobian"].detail


def test_transform_table_is_check_transforms():
    layer, args = examples.EXAMPLES["GradientClip"].build()
    outcomes = check_transforms(layer, *args)
    assert [outcomes[t].cell() for t in TRANSFORMS] == [
        "✓",
        "✓",
        "✓",
        "✗ TypeError",
        "✗ TypeError",
        "✓",
        "✓",
    ]


@pytest.mark.slow  # a pytest run of its own in a fresh process
def test_pytest_plugin_with_jaxtyping_packages(tmp_path):
    # A user's package with a typed custom_jvp layer, its test using the plugin's fixtures,
    # run under jaxtyping's own plugin checking that package.
    (tmp_path / "userlayer.py").write_text(
        textwrap.dedent("""
        import jax
        import jax.numpy as jnp
        from jaxtyping import Array, Float

        @jax.custom_jvp
        def soft_sign(x: Float[Array, " n"]) -> Float[Array, " n"]:
            return x / (1 + jnp.abs(x))

        @soft_sign.defjvp
        def _jvp(primals, tangents):
            (x,), (t,) = primals, tangents
            return soft_sign(x), t / (1 + jnp.abs(x)) ** 2

        def wrong(x: Float[Array, " n"]) -> Float[Array, " n"]:
            return 2 * x
    """)
    )
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent("""
        import jax.numpy as jnp
        import pytest
        from jaxtyping import TypeCheckError
        import userlayer

        def test_layer(assert_layer, jax_float64):
            report = assert_layer(userlayer.soft_sign, jnp.asarray([0.3, -2.0, 5.0]))
            assert report.ok and "float64" in str(jnp.asarray(1.0).dtype)

        def test_report_fails(check_layer):
            assert not check_layer(userlayer.soft_sign, jnp.asarray([0.3, -2.0]),
                                   reference=userlayer.wrong).ok

        def test_jaxtyping_still_checks():
            with pytest.raises(TypeCheckError):
                userlayer.soft_sign(jnp.ones((2, 2)))
    """)
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--cakejax-seed=3",
            "--jaxtyping-packages=userlayer,beartype.beartype",
            str(tmp_path),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 passed" in out.stdout
