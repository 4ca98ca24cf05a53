"""FixedPoint: implicit differentiation under every transform, never silently wrong, and
optimistix as an oracle."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
import pytest
from hypothesis import given, settings, strategies as st
from jax.test_util import check_grads

import cakejax as cj
from benchmarks._problems import tanh_contraction, TanhCell
from cakejax import _course as course

from .helpers import assert_course


def maturity(params, x0=course.DOUGH_INITIAL, **options):
    return cj.FixedPoint(cj.DoughMaturity(params[0], params[1]), **options)(x0)


def analytic(a, b):
    value = b / (1 - a)
    grad = np.asarray([b / (1 - a) ** 2, 1 / (1 - a)])
    hessian = np.asarray([[2 * b / (1 - a) ** 3, 1 / (1 - a) ** 2], [1 / (1 - a) ** 2, 0.0]])
    return value, grad, hessian


def test_course_numbers(x64):
    params = jnp.asarray(course.DOUGH_PARAMS, dtype=float)
    value, grad, hessian = analytic(*course.DOUGH_PARAMS)
    assert_course(maturity(params), value)
    assert_course(jax.grad(maturity)(params), course.DOUGH_GRAD)
    np.testing.assert_allclose(jax.hessian(maturity)(params), hessian, rtol=1e-4)
    # The gradient with respect to the module's fields, as a PyTree like the module.
    grads = eqx.filter_grad(lambda f: cj.FixedPoint(f)(0.0))(cj.DoughMaturity(0.75, 10.0))
    assert_course((grads.retention, grads.boost), course.DOUGH_GRAD)


TIGHT = {"rtol": 1e-13, "atol": 1e-13, "max_steps": 2000}


@pytest.mark.parametrize("transform", ["jit", "grad", "jvp", "jacfwd", "jacrev", "hessian",
                                       "vmap"])
def test_every_transform_matches_the_analytic_derivatives(f64, transform):
    a, b = 0.6, 3.0
    params = jnp.asarray([a, b])
    value, grad, hessian = analytic(a, b)
    f = lambda p: maturity(p, **TIGHT)  # noqa: E731
    if transform == "jit":
        np.testing.assert_allclose(jax.jit(f)(params), value, rtol=1e-12)
    elif transform == "grad":
        np.testing.assert_allclose(jax.grad(f)(params), grad, rtol=1e-11)
    elif transform == "jvp":
        v = jnp.asarray([0.3, -2.0])
        out, tangent = jax.jvp(f, (params,), (v,))
        np.testing.assert_allclose(out, value, rtol=1e-12)
        np.testing.assert_allclose(tangent, grad @ np.asarray(v), rtol=1e-11)
    elif transform in ("jacfwd", "jacrev"):
        np.testing.assert_allclose(getattr(jax, transform)(f)(params), grad, rtol=1e-11)
    elif transform == "hessian":
        np.testing.assert_allclose(jax.hessian(f)(params), hessian, rtol=1e-10)
        third = jax.jacfwd(jax.hessian(f))(params)  # d³m/da³ = 6b/(1-a)⁴
        np.testing.assert_allclose(third[0, 0, 0], 6 * b / (1 - a) ** 4, rtol=1e-9)
    else:
        batch = jnp.asarray([[0.6, 3.0], [-0.5, 1.0], [0.9, 2.0]])
        values = jax.vmap(f)(batch)
        grads = jax.vmap(jax.grad(f))(batch)
        for p, v, g in zip(np.asarray(batch), values, grads):
            exact_value, exact_grad, _ = analytic(*p)
            np.testing.assert_allclose(v, exact_value, rtol=1e-11)
            np.testing.assert_allclose(g, exact_grad, rtol=1e-10)


def test_derivative_with_respect_to_x0_is_exactly_zero(x64):
    fp = cj.FixedPoint(cj.DoughMaturity(0.75, 10.0))
    assert jax.grad(fp)(3.0) == 0.0
    assert jax.jvp(fp, (3.0,), (1.0,))[1] == 0.0


class PyTreeMap(eqx.Module):
    """{u, v} ↦ {A v + c, d · tanh(u[:2])}: a contraction on a dict state."""

    A: jax.Array
    c: jax.Array
    d: jax.Array

    def __call__(self, s):
        return {"u": self.A @ s["v"] + self.c, "v": self.d * jnp.tanh(s["u"][:2])}


def test_pytree_state_against_a_dense_solve(f64):
    key_a, key_c = jax.random.split(jax.random.key(0))
    model = PyTreeMap(0.1 * jax.random.normal(key_a, (3, 2)), jax.random.normal(key_c, (3,)),
                      jnp.asarray([0.5, -0.4]))
    x0 = {"u": jnp.zeros(3), "v": jnp.zeros(2)}
    solve = cj.FixedPoint(model, **TIGHT)
    x_star = solve(x0)
    again = model(x_star)
    np.testing.assert_allclose(again["u"], x_star["u"], rtol=1e-12)
    np.testing.assert_allclose(again["v"], x_star["v"], rtol=1e-12)

    # d(sum of the fixed point)/dc by the implicit function theorem, with a dense Jacobian.
    def flat_map(z, c):
        out = PyTreeMap(model.A, c, model.d)({"u": z[:3], "v": z[3:]})
        return jnp.concatenate([out["u"], out["v"]])

    z = jnp.concatenate([x_star["u"], x_star["v"]])
    jac_z = jax.jacfwd(flat_map)(z, model.c)
    jac_c = jax.jacfwd(flat_map, argnums=1)(z, model.c)
    dz_dc = jnp.linalg.solve(jnp.eye(5) - jac_z, jac_c)
    grads = eqx.filter_grad(
        lambda m: sum(jnp.sum(leaf) for leaf in jax.tree_util.tree_leaves(
            cj.FixedPoint(m, **TIGHT)(x0)))
    )(model)
    np.testing.assert_allclose(grads.c, jnp.sum(dz_dc, axis=0), rtol=1e-10)


_tight_maturity = jax.jit(lambda p: maturity(p, **TIGHT))


@settings(max_examples=8)
@given(a=st.floats(-0.8, 0.8), b=st.floats(-5.0, 5.0))
def test_check_grads(f64, a, b):
    check_grads(_tight_maturity, (jnp.asarray([a, b]),), order=2, modes=("fwd", "rev"))


FAILURES = {
    # name: (retention, boost, max_steps, message, result)
    "oscillates": (-1.0, 10.0, 256, "oscillates", cj.FixedPointResult.oscillating),
    "too slow": (0.999, 10.0, 20, "still converging, only slowly",
                 cj.FixedPointResult.max_steps_reached),
    "diverges": (1.5, 10.0, 256, "does not converge", cj.FixedPointResult.diverged),
    "diverges, few steps": (1.5, 10.0, 20, "does not converge", cj.FixedPointResult.diverged),
    "no fixed point (a = 1)": (1.0, 10.0, 50, "does not converge",
                               cj.FixedPointResult.diverged),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_failures_raise_eagerly_and_under_jit(case):
    a, b, max_steps, message, _ = FAILURES[case]
    fp = cj.FixedPoint(cj.DoughMaturity(a, b), max_steps=max_steps)
    with pytest.raises(eqx.EquinoxRuntimeError, match=message):
        fp(0.0)
    with pytest.raises(eqx.EquinoxRuntimeError, match=message):
        eqx.filter_jit(lambda f, x: f(x))(fp, 0.0)


@pytest.mark.parametrize("case", list(FAILURES))
def test_failures_are_reported_without_throw(case):
    a, b, max_steps, _, result = FAILURES[case]
    fn = cj.DoughMaturity(a, b)
    solution = cj.FixedPoint(fn, max_steps=max_steps, throw=False).solve(0.0)
    assert bool(solution.result == result)
    grads = eqx.filter_grad(lambda f: cj.FixedPoint(f, max_steps=max_steps, throw=False)(0.0))(fn)
    assert np.isnan(grads.retention) and np.isnan(grads.boost)


def test_singular_derivative_raises():
    # a = 1, b = 0: every point is a fixed point, the iteration stops at x0 at once, but
    # I - dfn/dx = 0 so the derivative does not exist.
    params = jnp.asarray([1.0, 0.0])
    np.testing.assert_allclose(maturity(params, x0=2.0), 2.0)
    for transform in (jax.grad, jax.jacfwd):
        with pytest.raises(Exception, match="I - dfn/dx is singular"):
            jax.block_until_ready(transform(maturity)(params))
    fn = cj.DoughMaturity(1.0, 0.0)
    grads = eqx.filter_grad(lambda f: cj.FixedPoint(f, throw=False)(0.0))(fn)
    assert np.isnan(grads.retention)


def test_failed_elements_are_nan_under_vmap():
    params = jnp.asarray([[0.5, 1.0], [-1.0, 10.0], [0.75, 10.0], [1.0, 0.0]])
    f = lambda p: maturity(p, throw=False)  # noqa: E731
    solutions = jax.vmap(
        lambda p: cj.FixedPoint(cj.DoughMaturity(p[0], p[1]), throw=False).solve(0.0)
    )(params)
    ok = solutions.result == cj.FixedPointResult.successful
    np.testing.assert_array_equal(ok, [True, False, True, True])
    grads = jax.vmap(jax.grad(f))(params)
    np.testing.assert_allclose(grads[0], analytic(0.5, 1.0)[1], rtol=1e-4)
    np.testing.assert_allclose(grads[2], analytic(0.75, 10.0)[1], rtol=1e-4)
    assert np.all(np.isnan(grads[1])) and np.all(np.isnan(grads[3]))
    tangents = jax.vmap(lambda p: jax.jvp(f, (p,), (jnp.ones(2),))[1])(params)
    assert np.isfinite(tangents[0]) and np.isnan(tangents[1]) and np.isnan(tangents[3])


def tanh_problem(n):
    """x ↦ tanh(W x + U θ) with ‖W‖₂ = 0.5: the benchmarks' problem."""
    return TanhCell(*tanh_contraction(n))


@pytest.mark.parametrize("n", [10, 100, 1000])
def test_agrees_with_optimistix(n):
    model = tanh_problem(n)
    x0 = jnp.zeros(n)

    def ours(theta):
        return jnp.sum(cj.FixedPoint(eqx.tree_at(lambda m: m.theta, model, theta))(x0) ** 2)

    def theirs(theta):
        m = eqx.tree_at(lambda m: m.theta, model, theta)
        solver = optx.FixedPointIteration(rtol=1e-6, atol=1e-6)
        sol = optx.fixed_point(lambda x, _: m(x), solver, x0, adjoint=optx.ImplicitAdjoint())
        return jnp.sum(sol.value**2)

    value, grad = jax.jit(jax.value_and_grad(ours))(model.theta)
    value_o, grad_o = jax.jit(jax.value_and_grad(theirs))(model.theta)
    np.testing.assert_allclose(value, value_o, rtol=1e-5)
    np.testing.assert_allclose(grad, grad_o, rtol=1e-4, atol=1e-5 * np.abs(grad_o).max())


def _shapes(jaxpr):
    """Every output shape of every equation, nested jaxprs (loops, solves, ...) included."""
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            yield tuple(getattr(var.aval, "shape", ()))
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _shapes(inner)


def test_derivatives_are_matrix_free():
    n = 64
    model = tanh_problem(n)

    def loss(theta):
        return jnp.sum(cj.FixedPoint(eqx.tree_at(lambda m: m.theta, model, theta))(jnp.zeros(n)))

    for transform in (jax.grad, jax.jacfwd):
        jaxpr = jax.make_jaxpr(transform(loss))(model.theta).jaxpr
        shapes = set(_shapes(jaxpr))
        assert (n,) in shapes
        assert (n, n) not in shapes, f"{transform.__name__} forms an n x n matrix"


def test_bad_configuration_and_state():
    fn = cj.DoughMaturity(0.5, 1.0)
    with pytest.raises(ValueError, match="rtol must be finite and >= 0"):
        cj.FixedPoint(fn, rtol=-1.0)
    with pytest.raises(ValueError, match="cannot both be 0"):
        cj.FixedPoint(fn, rtol=0.0, atol=0.0)
    with pytest.raises(ValueError, match="max_steps must be an int >= 1"):
        cj.FixedPoint(fn, max_steps=0)
    with pytest.raises(TypeError, match="same structure, shapes"):
        cj.FixedPoint(lambda x: jnp.stack([x, x]))(jnp.asarray(1.0))
    with pytest.raises(TypeError, match="x0"):  # jaxtyping's TypeCheckError is a TypeError
        cj.FixedPoint(lambda x: x)(jnp.asarray(1))
