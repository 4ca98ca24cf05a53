"""Part 3 of the course and the complex-differentiation tools."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from jaxtyping import TypeCheckError

import cakejax as cj
from cakejax import _course as course

from .helpers import assert_course


# Compiled once per function (and precision), so that each drawn point costs microseconds.
is_holomorphic = jax.jit(cj.is_holomorphic, static_argnums=0)
wirtinger = jax.jit(cj.wirtinger, static_argnums=0)
complex_jacobian = jax.jit(cj.complex_jacobian, static_argnums=0)


def test_course_numbers(x64):
    z = course.VIBRATION_Z
    score = cj.VibrationScore()
    assert_course(score(z), course.VIBRATION_SCORE)
    assert_course(jax.grad(score)(z), course.VIBRATION_JAX_GRAD)
    smooth = cj.SmoothMagic()
    assert_course(smooth(z), course.SMOOTH_MAGIC_VALUE)
    assert_course(cj.holomorphic_grad(smooth)(z), course.SMOOTH_MAGIC_DERIVATIVE)
    assert_course(jax.grad(smooth, holomorphic=True)(z), course.SMOOTH_MAGIC_DERIVATIVE)
    tricky = cj.TrickyMagic()
    assert_course(jax.grad(tricky, holomorphic=True)(z), course.TRICKY_MAGIC_HOLOMORPHIC_GRAD)
    assert_course(cj.complex_jacobian(tricky, course.TRICKY_JACOBIAN_Z), course.TRICKY_JACOBIAN)
    stability = cj.FlavorStability()
    assert_course(stability(course.STABILITY_X), course.STABILITY)
    assert_course(jax.grad(stability)(course.STABILITY_X), course.STABILITY_GRAD)


def test_wirtinger_pairs_of_the_course_spells(x64):
    z = course.VIBRATION_Z
    d_z, d_zbar = cj.wirtinger(cj.SmoothMagic(), z)
    np.testing.assert_allclose(d_z, 5 + 2j)
    np.testing.assert_allclose(d_zbar, 0)
    d_z, d_zbar = cj.wirtinger(cj.TrickyMagic(), z)
    np.testing.assert_allclose(d_z, 0)
    np.testing.assert_allclose(d_zbar, 1)


def test_ascent_direction_goes_up_and_jax_grad_goes_down(x64):
    score = cj.VibrationScore()
    z = course.VIBRATION_Z
    ascent = cj.ascent_direction(score, z)
    np.testing.assert_allclose(ascent, -1 - 2j)  # (∂x, ∂y) = (3 − 2x, −2y) = (−1, −2)
    step = 1e-2
    assert score(z + step * ascent) > score(z)
    assert score(z + step * jax.grad(score)(z)) < score(z)
    # Steepest: no other unit direction gains more.
    unit = complex(ascent) / abs(complex(ascent))
    for angle in np.linspace(0.1, 2 * np.pi - 0.1, 12):
        other = unit * complex(np.exp(1j * angle))
        assert score(z + step * other) < score(z + step * unit)


@pytest.mark.parametrize("angle", [0.0, 0.7, 2.0, -1.3])
def test_flavor_stability_is_one_plus_x_squared(x64, angle):
    x = 3.0 * angle
    np.testing.assert_allclose(cj.FlavorStability()(x), 1 + x**2, rtol=1e-6)
    np.testing.assert_allclose(jax.grad(cj.FlavorStability())(x), 2 * x, rtol=1e-6, atol=1e-6)


HOLOMORPHIC = {
    "z² + z": lambda z: z**2 + z,
    "sin": jnp.sin,
    "exp": jnp.exp,
    "1/z": lambda z: 1 / z,
    "z³ − 2z": lambda z: z**3 - 2 * z,
    "cosh": jnp.cosh,
    "log": jnp.log,
}
NON_HOLOMORPHIC = {
    "conj": jnp.conj,
    "Re": jnp.real,
    "Im": jnp.imag,
    "|z|²": lambda z: jnp.real(z * jnp.conj(z)),
    "|z|": jnp.abs,
    "exp(conj z)": lambda z: jnp.exp(jnp.conj(z)),
    "z·Re z": lambda z: z * (z + jnp.conj(z)) / 2,
}

# Points away from 0 and from log's branch cut.
points = st.tuples(st.floats(0.3, 2.0), st.floats(-2.0, 2.0)).map(lambda t: complex(*t))


@settings(max_examples=10)
@given(z=points)
def test_is_holomorphic(x64, z):
    for name, f in HOLOMORPHIC.items():
        assert is_holomorphic(f, z), name
    for name, f in NON_HOLOMORPHIC.items():
        assert not is_holomorphic(f, z), name


def test_is_holomorphic_checks_every_point_of_an_array():
    z = jnp.asarray([1 + 1j, 2 - 1j, 0.5j])
    assert cj.is_holomorphic(jnp.sin, z)
    assert not cj.is_holomorphic(lambda w: w * jnp.where(jnp.arange(3) == 2, jnp.conj(w), 1), z)


@pytest.mark.parametrize("name", list(NON_HOLOMORPHIC))
def test_holomorphic_grad_refuses_non_holomorphic(name):
    f = NON_HOLOMORPHIC[name]
    z = 1.2 + 0.5j
    with pytest.raises(eqx.EquinoxRuntimeError, match="not holomorphic at z"):
        cj.holomorphic_grad(f)(z)
    with pytest.raises(eqx.EquinoxRuntimeError, match="not holomorphic at z"):
        eqx.filter_jit(cj.holomorphic_grad(f))(z)
    with pytest.raises(Exception, match="not holomorphic at z"):
        jax.block_until_ready(jax.jit(cj.holomorphic_grad(f))(z))


def VIBRATION(w):
    return cj.VibrationScore()(w)  # built at trace time, in the precision in force


def REAL_SIN(w):
    return jnp.real(jnp.sin(w))


def G(w):
    return w**2 + jnp.conj(w)


def G_OF_EXP_CONJ(w):
    return G(jnp.exp(jnp.conj(w)))


holomorphic_grad = jax.jit(lambda f, z: cj.holomorphic_grad(f)(z), static_argnums=0)


@settings(max_examples=10)
@given(z=points)
def test_wirtinger_identities(x64, z):
    # Holomorphic: d/dz̄ = 0 and d/dz = jax.grad(holomorphic=True) = holomorphic_grad.
    for name, f in HOLOMORPHIC.items():
        d_z, d_zbar = wirtinger(f, z)
        np.testing.assert_allclose(d_zbar, 0, atol=1e-5 * max(1.0, abs(d_z)), err_msg=name)
        np.testing.assert_allclose(
            d_z, jax.grad(f, holomorphic=True)(jnp.asarray(z)), rtol=1e-5, err_msg=name
        )
        np.testing.assert_allclose(holomorphic_grad(f, z), d_z, rtol=1e-6, err_msg=name)
    # Real-valued f: d/dz̄ = conj(d/dz).
    for f in (VIBRATION, jnp.real, jnp.abs, REAL_SIN):
        d_z, d_zbar = wirtinger(f, z)
        np.testing.assert_allclose(d_zbar, jnp.conj(d_z), rtol=1e-6, atol=1e-7)
    # Chain rule for h = g ∘ f, with f = exp(conj z) and g(w) = w² + conj(w):
    #   ∂h/∂z = g_w f_z + g_w̄ conj(f_z̄),   ∂h/∂z̄ = g_w f_z̄ + g_w̄ conj(f_z).
    f = NON_HOLOMORPHIC["exp(conj z)"]
    f_z, f_zbar = wirtinger(f, z)
    g_w, g_wbar = wirtinger(G, f(jnp.asarray(z)))
    h_z, h_zbar = wirtinger(G_OF_EXP_CONJ, z)
    np.testing.assert_allclose(h_z, g_w * f_z + g_wbar * jnp.conj(f_zbar), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h_zbar, g_w * f_zbar + g_wbar * jnp.conj(f_z), rtol=1e-5, atol=1e-5)


@settings(max_examples=10)
@given(z=points)
def test_complex_jacobian_agrees_with_jacfwd_jacrev_and_finite_differences(f64, z):
    for f in (*HOLOMORPHIC.values(), *NON_HOLOMORPHIC.values()):
        jac = complex_jacobian(f, z)
        real_f = cj.realify(f)
        xy = jnp.asarray([z.real, z.imag])
        # Relative to the Jacobian's size: an entry that is exactly 0 one way can come out as
        # the smallest normal number (2.2e-308) the other way when Im z is that small.
        scale = 1e-12 * float(jnp.max(jnp.abs(jac)))
        np.testing.assert_allclose(
            jac, jnp.atleast_2d(jax.jacfwd(real_f)(xy)), rtol=1e-12, atol=scale
        )
        np.testing.assert_allclose(
            jac, jnp.atleast_2d(jax.jacrev(real_f)(xy)), rtol=1e-12, atol=scale
        )
        h = 1e-6
        central = jnp.stack(
            [(real_f(xy + h * e) - real_f(xy - h * e)) / (2 * h) for e in jnp.eye(2)], axis=-1
        )
        np.testing.assert_allclose(jac, jnp.atleast_2d(central), rtol=1e-6, atol=1e-6)


def test_complex_jacobian_of_arrays_has_two_by_two_blocks(x64):
    z = jnp.asarray([1 + 1j, 2j, -0.5 + 0.3j])
    jac = cj.complex_jacobian(lambda w: w**2, z)
    assert jac.shape == (6, 6)
    for i, zi in enumerate(np.asarray(z)):
        d = 2 * zi  # f' = 2z; a holomorphic block is [[Re f', −Im f'], [Im f', Re f']]
        np.testing.assert_allclose(
            jac[2 * i : 2 * i + 2, 2 * i : 2 * i + 2],
            [[d.real, -d.imag], [d.imag, d.real]],
            rtol=1e-6,
        )
    off_diagonal = jac.at[np.kron(np.eye(3), np.ones((2, 2))).astype(bool)].set(0)
    np.testing.assert_array_equal(off_diagonal, 0)
    np.testing.assert_allclose(cj.complex_jacobian(cj.TrickyMagic(), 0.3 - 2j), [[1, 0], [0, -1]])


def test_models_on_batches_and_under_jit(x64):
    z = jnp.asarray([2 + 1j, -1 + 0.5j, 0.3j])
    for model in (cj.VibrationScore(), cj.SmoothMagic(), cj.TrickyMagic()):
        batch = jax.vmap(model)(z)
        np.testing.assert_allclose(batch, jnp.stack([model(w) for w in z]), rtol=1e-6)
        np.testing.assert_allclose(jax.jit(lambda w, m=model: m(w))(z[0]), model(z[0]), rtol=1e-6)
    ascent = jax.vmap(lambda w: cj.ascent_direction(cj.VibrationScore(), w))(z)
    expected = (3 - 2 * np.asarray(z.real)) - 2j * np.asarray(z.imag)  # (∂x, ∂y) = (3 − 2x, −2y)
    np.testing.assert_allclose(ascent, expected, rtol=1e-6)
    x = jnp.asarray([0.0, 1.0, 3.0])
    np.testing.assert_allclose(jax.vmap(jax.grad(cj.FlavorStability()))(x), 2 * x, atol=1e-6)
    # The vibration score's real weight is a learnable leaf: d score / d a = Re z.
    grads = eqx.filter_grad(lambda m: m(2 + 1j))(cj.VibrationScore())
    np.testing.assert_allclose(grads.real_weight, 2.0)


BAD = {
    "real where complex is required": (
        lambda: cj.VibrationScore()(jnp.asarray(2.0)),
        "z",
        "Complex",
    ),
    "complex where real is required": (
        lambda: cj.FlavorStability()(jnp.asarray(3 + 0j)),
        "x",
        "Float",
    ),
    "batch where scalar is required": (lambda: cj.SmoothMagic()(jnp.ones(2, complex)), "z", "''"),
    "real point for wirtinger": (lambda: cj.wirtinger(jnp.sin, jnp.asarray(1.0)), "z", "Complex"),
    "integer weight": (lambda: cj.VibrationScore(jnp.asarray(3)), "real_weight", "Float"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_inputs(case):
    call, name, expected = BAD[case]
    with pytest.raises(TypeCheckError) as info:
        call()
    assert f"'{name}'" in str(info.value)
    assert expected in str(info.value)
