"""FixedPoint's forward solve: accuracy by default, the floating-point floor, failures named
correctly in every mode, the solvers against each other and optimistix."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
import pytest
from hypothesis import example, given, settings, strategies as st

import cakejax as cj
from cakejax import _course as course
from cakejax.examples import tanh_contraction, TanhCell

from .fixed_point_cases import analytic, maturity, params, SOLVERS, TIGHT
from .helpers import assert_course


def test_course_numbers(x64):
    value, _, hessian = analytic(*course.DOUGH_PARAMS)
    p = params(*course.DOUGH_PARAMS)
    assert_course(maturity(p), value)
    assert_course(jax.grad(maturity)(p), course.DOUGH_GRAD)
    np.testing.assert_allclose(jax.hessian(maturity)(p), hessian, rtol=1e-5)
    grads = eqx.filter_grad(lambda f: cj.FixedPoint(f)(0.0))(cj.DoughMaturity(0.75, 10.0))
    assert_course((grads.retention, grads.boost), course.DOUGH_GRAD)


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_accurate_by_default_in_float32(solver):
    """Defect 4: the value and gradient within 1e-6 relative with default tolerances (the
    old step-size rule gave 39.9999 and 159.9991)."""
    p = params(0.75, 10.0)
    value, grad, _ = analytic(0.75, 10.0)
    f = lambda q: maturity(q, solver=SOLVERS[solver])  # noqa: E731
    np.testing.assert_allclose(f(p), value, rtol=1e-6)
    np.testing.assert_allclose(jax.grad(f)(p), grad, rtol=1e-6)


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_float64_accuracy_with_tight_tolerance(f64, solver):
    for a, b in [(0.75, 10.0), (-0.9, 3.0), (0.95, -2.0)]:
        value, grad, _ = analytic(a, b)
        f = lambda q: maturity(q, solver=SOLVERS[solver], **TIGHT)  # noqa: E731
        np.testing.assert_allclose(f(params(a, b)), value, rtol=1e-12)
        np.testing.assert_allclose(jax.grad(f)(params(a, b)), grad, rtol=1e-11)


@settings(max_examples=15)
@given(a=st.floats(-0.995, -0.97), b=st.floats(1.0, 20.0))
def test_float32_floor_is_not_a_failure(a, b):
    """Defect 3: a = -0.99 in float32 cannot meet rtol = 1e-6 with Picard (rounding noise is
    amplified by 1/(1 - |a|)), but it converges: no error, and x* as accurate as float32
    allows."""
    solution = cj.FixedPoint(cj.DoughMaturity(a, b), solver=cj.Picard(), max_steps=5000).solve(0.0)
    assert bool(solution.result == cj.FixedPointResult.successful) or bool(
        solution.result == cj.FixedPointResult.floating_point_floor
    )
    x_star = b / (1 - np.float64(np.float32(a)))
    assert abs(float(solution.value) - x_star) <= 1e-4 * abs(x_star)


@pytest.mark.parametrize("solver", ["Picard", "Anderson"])
def test_optimistix_cos_problem_converges(x64, solver):
    fp = cj.FixedPoint(lambda x: jnp.cos(1.3 * x), solver=SOLVERS[solver], max_steps=5000)
    x = fp(jnp.asarray(0.0))
    tol = 1e-10 if x64 else 1e-6
    reference = optx.fixed_point(
        lambda x, _: jnp.cos(1.3 * x), optx.Newton(tol, tol), jnp.asarray(0.5)
    ).value
    np.testing.assert_allclose(x, reference, rtol=1e-5 if not x64 else 1e-6)


@pytest.mark.parametrize("rho", [0.99, 0.999])
def test_weak_symmetric_contraction_n1000_is_not_oscillating(rho):
    """Defect 3: x = tanh(W x + U θ), W symmetric with spectral radius 0.99, was flagged
    'oscillating' after 165 steps."""
    cell = TanhCell(*tanh_contraction(1000, rho))
    for solver in (cj.Picard(), cj.Anderson()):
        solution = cj.FixedPoint(cell, solver=solver, max_steps=5000).solve(jnp.zeros(1000))
        x = solution.value
        assert float(jnp.max(jnp.abs(cell(x) - x))) <= 1e-5 * float(jnp.max(jnp.abs(x)))


def test_anderson_needs_a_fifth_of_picards_steps_at_rho_099():
    cell = TanhCell(*tanh_contraction(1000, 0.99))
    x0 = jnp.zeros(1000)
    picard = cj.FixedPoint(cell, solver=cj.Picard(), max_steps=5000).solve(x0).steps
    anderson = cj.FixedPoint(cell, solver=cj.Anderson()).solve(x0).steps
    assert int(anderson) <= int(picard) / 5, (int(anderson), int(picard))


def test_newton_finds_a_repelling_fixed_point():
    p = params(1.5, 10.0)
    f = lambda q: maturity(q, solver=cj.Newton())  # noqa: E731
    np.testing.assert_allclose(f(p), -20.0, rtol=1e-6)
    np.testing.assert_allclose(jax.grad(f)(p), [40.0, -2.0], rtol=1e-6)
    with pytest.raises(eqx.EquinoxRuntimeError, match="does not converge"):
        maturity(p, solver=cj.Picard())


FAILURES = {
    # name: (retention, boost, solver, max_steps, message, result)
    "two-cycle (a = -1)": (
        -1.0,
        10.0,
        cj.Picard(),
        256,
        "oscillates",
        cj.FixedPointResult.oscillating,
    ),
    "too slow (0.999, 20 steps)": (
        0.999,
        10.0,
        cj.Picard(),
        20,
        "still making progress",
        cj.FixedPointResult.max_steps_reached,
    ),
    "repelling (1.5, Picard)": (
        1.5,
        10.0,
        cj.Picard(),
        256,
        "does not converge",
        cj.FixedPointResult.diverged,
    ),
    "repelling, few steps": (
        1.5,
        10.0,
        cj.Picard(),
        5,
        "does not converge",
        cj.FixedPointResult.diverged,
    ),
    "no fixed point (a = 1)": (
        1.0,
        10.0,
        cj.Anderson(),
        256,
        "does not converge",
        cj.FixedPointResult.diverged,
    ),
}


def _modes(fp: cj.FixedPoint):
    """The failing solve reached eagerly, under filter_jit, jit, grad and jvp."""

    def loss(f):
        return fp.__class__(f, solver=fp.solver, max_steps=fp.max_steps, throw=fp.throw)(0.0)

    return {
        "eager": lambda: fp(0.0),
        "filter_jit": lambda: eqx.filter_jit(lambda f, x: f(x))(fp, 0.0),
        "grad": lambda: eqx.filter_grad(loss)(fp.fn),
        "jvp": lambda: eqx.filter_jvp(loss, (fp.fn,), (fp.fn,)),
    }


@pytest.mark.parametrize("case", list(FAILURES))
@pytest.mark.parametrize("mode", ["eager", "filter_jit", "grad", "jvp"])
def test_failures_raise_in_every_mode(case, mode):
    a, b, solver, max_steps, message, _ = FAILURES[case]
    fp = cj.FixedPoint(cj.DoughMaturity(a, b), solver=solver, max_steps=max_steps)
    with pytest.raises(eqx.EquinoxRuntimeError, match=message):
        jax.block_until_ready(_modes(fp)[mode]())


@pytest.mark.parametrize("case", list(FAILURES))
def test_failures_are_reported_without_throw(case):
    a, b, solver, max_steps, _, result = FAILURES[case]
    fn = cj.DoughMaturity(a, b)
    fp = cj.FixedPoint(fn, solver=solver, max_steps=max_steps, throw=False)
    solution = fp.solve(0.0)
    assert bool(solution.result == result)
    grads = eqx.filter_grad(
        lambda f: cj.FixedPoint(f, solver=solver, max_steps=max_steps, throw=False)(0.0)
    )(fn)
    assert np.isnan(grads.retention) and np.isnan(grads.boost)
    _, tangent = eqx.filter_jvp(
        lambda f: cj.FixedPoint(f, solver=solver, max_steps=max_steps, throw=False)(0.0),
        (fn,),
        (fn,),
    )
    assert np.isnan(tangent)


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_state_scale_does_not_change_relative_accuracy(x64, solver):
    """Tolerances are relative to the problem's size: b = 1e-12 and b = 1e12 are solved to
    the same relative accuracy (an absolute atol would stop at once on the first)."""
    for b in (1e-12, 1.0, 1e12):
        x = maturity(params(0.9, b), solver=SOLVERS[solver], max_steps=2000)
        np.testing.assert_allclose(x, 10 * b, rtol=1e-5)


@pytest.mark.parametrize("rho", [0.5, 0.9, 0.99])
def test_solution_carries_the_spectral_radius_when_asked(rho):
    """Issue 32: `solve(x0, spectral_radius=True)` carries the spectral radius of df/dx at
    the fixed point (within 5 % of the dense eigenvalues'), per example under vmap and
    jitted, inside a gradient; `None` unless asked for."""
    cell = TanhCell(*tanh_contraction(50, rho))
    solution = cj.FixedPoint(cell).solve(jnp.zeros(50), spectral_radius=True)
    exact = jnp.max(jnp.abs(jnp.linalg.eigvals(jax.jacfwd(cell)(solution.value))))
    np.testing.assert_allclose(solution.spectral_radius, exact, rtol=0.05)
    assert cj.FixedPoint(cell).solve(jnp.zeros(50)).spectral_radius is None

    # x = t tanh(x) + 1 on 3 states: the radius is t sech^2(x*).
    def radius(t):
        solution = cj.FixedPoint(lambda x: t * jnp.tanh(x) + 1).solve(
            jnp.zeros(3), spectral_radius=True
        )
        return solution.spectral_radius, solution.value[0]

    t = jnp.asarray([0.5, 0.9, 2.0])
    r, x = jax.jit(jax.vmap(radius))(t)
    np.testing.assert_allclose(r, t / jnp.cosh(x) ** 2, rtol=1e-4)
    grad = jax.grad(lambda t: radius(t)[1] + 0 * radius(t)[0])(0.9)
    x = radius(0.9)[1]
    np.testing.assert_allclose(grad, jnp.tanh(x) / (1 - 0.9 / jnp.cosh(x) ** 2), rtol=1e-4)


def test_solution_reports_the_true_residual_and_steps():
    cell = TanhCell(*tanh_contraction(50, 0.9))
    solution = cj.FixedPoint(cell).solve(jnp.zeros(50))
    x = solution.value
    fx = cell(x)
    # f(x) - x at the answer is a difference of nearly equal numbers: computed again outside
    # the solve's program, f(x) rounds differently by an ulp or two (jax 0.8.0's CPU backend
    # differs from the solve's by 3e-8 here), so the two residuals agree to the rounding of
    # f(x), not to a relative tolerance of a residual that is itself a few ulps.
    eps = float(jnp.finfo(x.dtype).eps)
    rounding = 4 * eps * float(jnp.max(jnp.abs(fx)))
    assert abs(float(solution.residual) - float(jnp.max(jnp.abs(fx - x)))) <= rounding
    assert 1 <= int(solution.steps) < 256
    assert solution.backward_steps is None and solution.backward_residual is None


def test_per_element_convergence_under_vmap():
    batch = jnp.asarray([[0.5, 1.0], [-1.0, 10.0], [0.75, 10.0], [0.999, 1.0]])
    solutions = jax.vmap(
        lambda p: cj.FixedPoint(
            cj.DoughMaturity(p[0], p[1]), solver=cj.Picard(), throw=False
        ).solve(0.0)
    )(batch)
    codes = [
        cj.FixedPointResult.successful,
        cj.FixedPointResult.oscillating,
        cj.FixedPointResult.successful,
        cj.FixedPointResult.max_steps_reached,
    ]
    found = jax.tree_util.tree_leaves(solutions.result)[0]
    for i, code in enumerate(codes):
        assert int(found[i]) == int(jax.tree_util.tree_leaves(code)[0])
    np.testing.assert_allclose(solutions.value[0], 2.0, rtol=1e-6)
    np.testing.assert_allclose(solutions.value[2], 40.0, rtol=1e-6)


@pytest.mark.parametrize("rho", [0.5, 0.9, 0.99, 0.999])
def test_agrees_with_optimistix(rho):
    n = 100
    W, U, theta = tanh_contraction(n, rho)
    x0 = jnp.zeros(n)

    def ours(t):
        return jnp.sum(cj.FixedPoint(TanhCell(W, U, t))(x0) ** 2)

    def theirs(t):
        sol = optx.fixed_point(
            lambda x, _: TanhCell(W, U, t)(x),
            optx.Newton(1e-7, 1e-7),
            x0,
            adjoint=optx.ImplicitAdjoint(),
        )
        return jnp.sum(sol.value**2)

    value, grad = jax.jit(jax.value_and_grad(ours))(theta)
    value_o, grad_o = jax.jit(jax.value_and_grad(theirs))(theta)
    np.testing.assert_allclose(value, value_o, rtol=1e-5)
    np.testing.assert_allclose(grad, grad_o, rtol=1e-4 * (1 + 10 * (rho > 0.95)))


def test_bad_configuration_and_state():
    fn = cj.DoughMaturity(0.5, 1.0)
    with pytest.raises(ValueError, match="rtol must be a finite number >= 0"):
        cj.FixedPoint(fn, rtol=-1.0)
    with pytest.raises(ValueError, match="cannot both be 0"):
        cj.FixedPoint(fn, rtol=0.0, atol=0.0)
    with pytest.raises(ValueError, match="max_steps must be an int >= 1"):
        cj.FixedPoint(fn, max_steps=0)
    # Named by the type check (jaxtyping) or, with CAKEJAX_TYPECHECK=0, by __check_init__.
    with pytest.raises(TypeError, match="solver"):
        cj.FixedPoint(fn, solver=optx.FixedPointIteration(1e-6, 1e-6))
    with pytest.raises(TypeError, match="adjoint"):
        cj.FixedPoint(fn, adjoint=optx.ImplicitAdjoint())
    with pytest.raises(ValueError, match="history must be an int >= 1"):
        cj.Anderson(history=0)
    with pytest.raises(ValueError, match="damping must be a finite number > 0 and <= 1"):
        cj.Picard(damping=1.5)
    with pytest.raises((TypeError, ValueError), match="linear_solver"):
        cj.Implicit("cholesky")
    with pytest.raises(ValueError, match="terms must be an int >= 1"):
        cj.Phantom(terms=0)
    with pytest.raises(TypeError, match="same structure, shapes"):
        cj.FixedPoint(lambda x: jnp.stack([x, x]))(jnp.asarray(1.0))
    with pytest.raises(TypeError, match="x0"):  # jaxtyping's TypeCheckError is a TypeError
        cj.FixedPoint(lambda x: x)(jnp.asarray(1))
    with pytest.raises(TypeError, match="cotangent must have the structure"):
        cj.FixedPoint(fn).solve(0.0, cotangent=jnp.ones(3))


MAPS_WITHOUT_REACHABLE_FIXED_POINTS = {
    "x^2 + 1 (no real fixed point)": lambda x: x**2 + 1,
    "exp (no real fixed point)": jnp.exp,
    "x^3 (repelling from |x| > 1)": lambda x: x**3,
    "x^2 - 2": lambda x: x**2 - 2,
}


@settings(max_examples=20)
@given(
    x0=st.floats(-5.0, 5.0),
    name=st.sampled_from(list(MAPS_WITHOUT_REACHABLE_FIXED_POINTS)),
    solver=st.sampled_from(["Anderson", "Picard", "Newton"]),
)
@example(x0=3.625, name="x^3 (repelling from |x| > 1)", solver="Anderson")
def test_a_blow_up_or_a_jump_is_never_reported_converged(x0, name, solver):
    """Found by trying it as a user: after a jump or a blow-up the secant slope is huge, and
    the error estimate |r| / |1 - slope| excused any residual (exp from -4 was 'successful'
    with residual inf). Whatever the outcome, 'successful' means a small true residual:
    small against the documented scale s = max(|x|, |f(x0)|) (`_loop.py`), 20 times the
    default rtol. (x³ from 3.625 does reach its repelling fixed point 1 with Anderson, to
    1.7e-5: within 1e-6 of s = 47.6, not of |x| = 1.)"""
    f = MAPS_WITHOUT_REACHABLE_FIXED_POINTS[name]
    solution = cj.FixedPoint(f, solver=SOLVERS[solver], throw=False).solve(x0)
    if bool(solution.result == cj.FixedPointResult.successful):
        x = float(solution.value)
        scale = max(abs(x), abs(float(f(jnp.asarray(x0, dtype=float)))))
        assert abs(float(f(x)) - x) <= 1e-5 * scale, (x, float(f(x)))


def test_states_and_cotangents_as_users_write_them():
    fn = cj.DoughMaturity(0.75, 10.0)
    np.testing.assert_allclose(cj.FixedPoint(fn)(np.float32(0.0)), 40.0, rtol=1e-6)
    halve = cj.FixedPoint(lambda s: (s[0] / 2 + 1, s[1] / 2 + 3))
    np.testing.assert_allclose(halve((0.0, np.zeros(2, np.float32)))[1], [6.0, 6.0], rtol=1e-6)
    solution = cj.FixedPoint(fn, adjoint=cj.Implicit("dense")).solve(0.0, cotangent=1.0)
    assert int(solution.backward_steps) == 1 and float(solution.backward_residual) <= 1e-6
    pair = cj.FixedPoint(lambda s: {"a": s["a"] / 2, "b": s["b"] / 2})
    with pytest.raises(TypeError, match="cotangent must have the structure"):
        pair.solve({"a": 1.0, "b": 1.0}, cotangent={"a": 1.0, "c": 1.0})


def test_a_neumann_solve_out_of_steps_says_so():
    with pytest.raises(eqx.EquinoxRuntimeError, match="contracts too weakly for max_steps"):
        jax.grad(
            lambda a: cj.FixedPoint(cj.DoughMaturity(a, 10.0), adjoint=cj.Implicit("neumann"))(0.0)
        )(0.99)


@pytest.mark.parametrize("n", [1, 3, 8, 64])
def test_a_start_at_the_fixed_point_converges_at_once(n):
    """A start exactly at x* (residual 0): Anderson's plain phase (states of more than 4
    elements) halved a residual of 0 forever and ran out of steps; it hands over at once."""
    fixed = 2.0 * jnp.ones(n)
    fp = cj.FixedPoint(lambda x: 0.5 * x + 1.0)
    solution = fp.solve(fixed)
    assert bool(solution.converged) and int(solution.steps) <= 2
    np.testing.assert_array_equal(solution.value, fixed)
    batch = jax.vmap(fp.solve)(jnp.stack([fixed, jnp.zeros(n)]))
    assert bool(batch.converged.all())
    np.testing.assert_allclose(batch.value, 2.0, rtol=1e-6)
