"""FixedPoint's derivatives: exact and scale-invariant, every solver x adjoint under every
transform, singular systems caught in every mode, matrix-free, closures, training."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import optimistix as optx
import pytest
from hypothesis import given, settings, strategies as st
from jax.test_util import check_grads

import cakejax as cj
from cakejax.examples import tanh_contraction, TanhCell
from cakejax.fixed_point._adjoint import DENSE_AUTO
from cakejax.testing import transform, TRANSFORMS

from .fixed_point_cases import analytic, EXACT_ADJOINTS, maturity, params, SOLVERS, TIGHT
from .helpers import serialise_roundtrip


A, B = 0.6, 3.0


def _check_transform(f, name, rtol):
    """`f` = m*(a, b) under the transform `name`, against the analytic values; under vmap,
    the gradient over a batch of (a, b)."""
    p = params(A, B)
    value, grad, hessian = analytic(A, B)
    if name == "vmap":
        batch = jnp.asarray([[A, B], [-0.5, 1.0], [0.9, 2.0]])
        expected = np.stack([analytic(*q)[1] for q in np.asarray(batch)])
        np.testing.assert_allclose(transform("vmap", jax.grad(f))(batch), expected, rtol=rtol)
        return
    v = jnp.asarray([0.3, -2.0], dtype=p.dtype)
    expected = {
        "jit": value,
        "grad": grad,
        "jvp": (value, grad @ np.asarray(v)),
        "jacfwd": grad,
        "jacrev": grad,
        "hessian": hessian,
    }[name]
    got = transform(name, f, tangent=v)(p)
    for g, e in zip(
        jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected), strict=True
    ):
        np.testing.assert_allclose(g, e, rtol=rtol, atol=rtol * np.max(np.abs(e)))


def _slow_hessian(solver_or_adjoint, t, default):
    """A Hessian (reverse over forward through the implicit rule) is the costliest program
    to compile: the default's is in the quick suite, the others' are `slow`."""
    marks = pytest.mark.slow if t == "hessian" and solver_or_adjoint != default else ()
    return pytest.param(solver_or_adjoint, t, marks=marks)


#: The default solver under every transform; the others (which change only the forward solve,
#: not the derivative rule) under the transforms that exercise the rule in each mode.
SOLVER_CASES = [_slow_hessian("Anderson", t, "Anderson") for t in TRANSFORMS] + [
    _slow_hessian(solver, t, "Anderson")
    for solver in SOLVERS
    if solver != "Anderson"
    for t in ("grad", "jvp", "hessian")
]
ADJOINT_CASES = [
    _slow_hessian(adjoint, t, "dense")  # the default for small states
    for adjoint in EXACT_ADJOINTS
    for t in ("grad", "jvp", "jacrev", "hessian", "vmap")
]


@pytest.mark.parametrize("solver, transform", SOLVER_CASES)
def test_every_solver_under_every_transform(f64, solver, transform):
    f = jax.jit(lambda p: maturity(p, solver=SOLVERS[solver], **TIGHT))
    _check_transform(f, transform, rtol=1e-9)


@pytest.mark.parametrize("adjoint, transform", ADJOINT_CASES)
def test_every_exact_adjoint_under_every_transform(f64, adjoint, transform):
    f = jax.jit(lambda p: maturity(p, adjoint=EXACT_ADJOINTS[adjoint], **TIGHT))
    _check_transform(f, transform, rtol=1e-9)


@pytest.mark.parametrize("terms", [1, 3])
def test_approximate_adjoints_give_their_truncated_series(f64, terms):
    """JacobianFree and Phantom(k) replace (1 - a)^-1 by sum_{i<k} a^i: exactly that, under
    grad, jvp and the Hessian's first row of mixed terms (d/db of the approximate gradient)."""
    adjoint = cj.JacobianFree() if terms == 1 else cj.Phantom(terms)
    assert adjoint.approximate and not cj.Implicit().approximate
    f = lambda p: maturity(p, adjoint=adjoint, **TIGHT)  # noqa: E731
    p = params(A, B)
    series = sum(A**i for i in range(terms))
    x_star = B / (1 - A)
    np.testing.assert_allclose(jax.grad(f)(p), [x_star * series, series], rtol=1e-10)
    tangent = jax.jvp(f, (p,), (jnp.asarray([1.0, 0.0]),))[1]
    np.testing.assert_allclose(tangent, x_star * series, rtol=1e-10)
    fp = cj.FixedPoint(cj.DoughMaturity(A, B), adjoint=adjoint, **TIGHT)
    solution = fp.solve(0.0, cotangent=jnp.asarray(1.0))
    # How far the approximation is from the exact adjoint solve: |1 - (1 - a) series|.
    np.testing.assert_allclose(solution.backward_residual, A**terms, rtol=1e-10)
    assert int(solution.backward_steps) == terms


LOSS_SCALE = st.integers(-12, 12).map(lambda e: 10.0**e)


@pytest.mark.parametrize("solver", ["Anderson", "Picard"])
@settings(max_examples=8)
@given(scale=LOSS_SCALE, a=st.floats(-0.9, 0.95))
def test_derivatives_are_scale_invariant(x64, solver, scale, a):
    """Defect 1: the gradient of 1e-7 * m* was 1.75e-7 instead of 4e-7 (the linear solve
    stopped on an absolute tolerance in the cotangent's units). For loss scales 1e-12..1e12,
    grad, jvp and hessian are accurate relative to the exact values."""
    rtol = 1e-9 if x64 else 1e-4
    options = dict(TIGHT) if x64 else {}
    b = 10.0
    _, grad, hessian = analytic(a, b)

    def loss(p):
        return scale * maturity(p, solver=SOLVERS[solver], **options)

    p = params(a, b)
    np.testing.assert_allclose(jax.grad(loss)(p) / scale, grad, rtol=rtol)
    tangent = jax.jvp(loss, (p,), (jnp.asarray([1.0, 0.0], dtype=p.dtype),))[1]
    np.testing.assert_allclose(tangent / scale, grad[0], rtol=rtol)
    np.testing.assert_allclose(jax.hessian(loss)(p)[0] / scale, hessian[0], rtol=10 * rtol)


@pytest.mark.parametrize("scale", [1e-12, 1e-7, 1.0, 1e12])
def test_scale_invariant_against_optimistix(f64, scale):
    """On a vector problem, against optimistix with its dense (exact, LU) adjoint."""
    W, U, theta = tanh_contraction(20, 0.95)

    def ours(t):
        return scale * jnp.sum(cj.FixedPoint(TanhCell(W, U, t), rtol=1e-13)(jnp.zeros(20)) ** 2)

    def theirs(t):
        sol = optx.fixed_point(
            lambda x, _: TanhCell(W, U, t)(x),
            optx.Newton(1e-13, 1e-13),
            jnp.zeros(20),
            adjoint=optx.ImplicitAdjoint(),
        )
        return scale * jnp.sum(sol.value**2)

    np.testing.assert_allclose(jax.grad(ours)(theta), jax.grad(theirs)(theta), rtol=1e-9)


SINGULAR_MODES = {
    "grad": lambda f, p: transform("grad", f)(p),
    "jvp": lambda f, p: transform("jvp", f)(p),
    "jvp along a": lambda f, p: transform("jvp", f, tangent=jnp.asarray([1.0, 0.0]))(p),
    "jacfwd": lambda f, p: transform("jacfwd", f)(p),
    "hessian": lambda f, p: transform("hessian", f)(p),
}


@pytest.mark.parametrize("mode", list(SINGULAR_MODES))
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_singular_derivative_raises_in_every_mode(mode, jit):
    """Defect 2: a = 1, b = 0 makes every point a fixed point; jvp along a returned 0 (its
    right-hand side x* * 1 + 0 is zero) while reverse mode raised. Now every mode raises
    the documented message, eagerly as an EquinoxRuntimeError (defect 5)."""
    f = lambda p: maturity(p, x0=0.0)  # noqa: E731
    run = SINGULAR_MODES[mode]
    if jit:
        run = eqx.filter_jit(run)
    with pytest.raises(eqx.EquinoxRuntimeError, match="I - dfn/dx is singular"):
        jax.block_until_ready(run(f, params(1.0, 0.0)))


class HalfSingular(eqx.Module):
    """(x1, x2) -> (x1, x2/2 + θ): I - J = diag(0, 1/2) is singular, yet the right-hand side
    d/dθ = (0, 1) lies in its range, so a linear solve would happily return a number."""

    theta: jax.Array

    def __call__(self, x):
        return jnp.stack([x[0], 0.5 * x[1] + self.theta])


@pytest.mark.parametrize("adjoint", list(EXACT_ADJOINTS))
def test_singular_with_a_consistent_right_hand_side(adjoint):
    fn = HalfSingular(jnp.asarray(1.0))

    def loss(m, throw=True):
        fp = cj.FixedPoint(m, adjoint=EXACT_ADJOINTS[adjoint], throw=throw)
        return jnp.sum(fp(jnp.zeros(2)))

    with pytest.raises(eqx.EquinoxRuntimeError, match="singular"):
        eqx.filter_grad(loss)(fn)
    with pytest.raises(eqx.EquinoxRuntimeError, match="singular"):
        eqx.filter_jvp(loss, (fn,), (fn,))
    assert np.isnan(eqx.filter_grad(lambda m: loss(m, throw=False))(fn).theta)
    solution = jax.jvp(
        lambda t: cj.FixedPoint(HalfSingular(t), throw=False).solve(jnp.zeros(2)),
        (jnp.asarray(1.0),),
        (jnp.asarray(1.0),),
    )[0]
    assert bool(solution.result == cj.FixedPointResult.singular)


_tight_maturity = jax.jit(lambda p: maturity(p, **TIGHT))
_default_maturity = jax.jit(maturity)


@pytest.mark.slow  # the float64 twin of the next test
@settings(max_examples=2)
@given(a=st.floats(-0.8, 0.8), b=st.floats(-5.0, 5.0))
def test_check_grads_float64(f64, a, b):
    check_grads(_tight_maturity, (params(a, b),), order=2, modes=("fwd", "rev"))


@settings(max_examples=2)
@given(a=st.floats(-0.8, 0.8), b=st.floats(0.5, 5.0))
def test_check_grads_float32(a, b):
    check_grads(
        _default_maturity, (params(a, b),), order=2, modes=("fwd", "rev"), eps=1e-2, rtol=2e-2
    )


def test_derivative_with_respect_to_x0_is_exactly_zero(x64):
    fp = cj.FixedPoint(cj.DoughMaturity(0.75, 10.0))
    assert jax.grad(fp)(3.0) == 0.0
    assert jax.jvp(fp, (3.0,), (1.0,))[1] == 0.0


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


class LowRankCell(eqx.Module):
    """x -> tanh(P Qᵀ x + U θ): no n x n array exists anywhere in the problem, so any n x n
    array in the jaxpr would be a Jacobian formed by FixedPoint."""

    P: jax.Array
    Q: jax.Array
    U: jax.Array
    theta: jax.Array

    def __call__(self, x):
        return jnp.tanh(self.P @ (self.Q.T @ x) + self.U @ self.theta)


@pytest.mark.parametrize("solver", ["Anderson", "Newton"])
def test_derivatives_are_matrix_free(solver):
    """Past DENSE_AUTO state elements the default adjoint (the Neumann series, GMRES where it
    gives up) forms no n x n matrix."""
    n = DENSE_AUTO + 1
    kp, kq, ku = jax.random.split(jax.random.key(1), 3)
    P, Q = jax.random.normal(kp, (n, 3)) / n, jax.random.normal(kq, (n, 3))
    U = jax.random.normal(ku, (n, 4)) / n

    def loss(t):
        cell = LowRankCell(P, Q, U, t)
        return jnp.sum(cj.FixedPoint(cell, solver=SOLVERS[solver])(jnp.zeros(n)))

    theta = jnp.ones(4)
    for derivative in (jax.grad, jax.jacfwd):
        shapes = set(_shapes(jax.make_jaxpr(derivative(loss))(theta).jaxpr))
        assert (n,) in shapes
        assert (n, n) not in shapes, f"{derivative.__name__} forms an n x n matrix"


def test_closure_over_a_traced_parameter_is_differentiated(x64):
    """Defect 5: a function closing over the θ being differentiated raised
    UnexpectedTracerError; it is closure-converted and differentiated exactly."""

    def loss(th):
        return cj.FixedPoint(lambda x: jnp.tanh(0.5 * x + th), rtol=1e-10)(jnp.zeros(3)).sum()

    th = jnp.asarray(0.3)
    x = cj.FixedPoint(lambda x: jnp.tanh(0.5 * x + th), rtol=1e-12)(jnp.zeros(3))
    d = 1 - jnp.tanh(0.5 * x + th) ** 2  # x = tanh(x/2 + θ): dx/dθ = d / (1 - d/2)
    np.testing.assert_allclose(
        jax.grad(loss)(th), jnp.sum(d / (1 - 0.5 * d)), rtol=1e-8 if x64 else 1e-5
    )
    np.testing.assert_allclose(jax.jit(jax.grad(loss))(th), jax.grad(loss)(th), rtol=1e-6)


def test_backward_statistics_for_a_cotangent():
    W, U, theta = tanh_contraction(200, 0.99)
    fp = cj.FixedPoint(TanhCell(W, U, theta))
    solution = fp.solve(jnp.zeros(200), cotangent=jnp.ones(200))
    assert int(solution.backward_steps) >= 1
    assert float(solution.backward_residual) <= 1e-4
    # Converged (at rho = 0.99 in float32 the forward may end at the floating-point floor,
    # which counts as converged, depending on the rounding of its last steps), and the
    # backward solve did not mark the derivative singular.
    assert bool(solution.converged)
    assert not bool(solution.result == cj.FixedPointResult.singular)


class DEQ(eqx.Module):
    """A small deep-equilibrium regressor: z* = tanh(W z* + U x), y = v · z*."""

    W: jax.Array
    U: jax.Array
    v: jax.Array
    adjoint: cj.AbstractAdjoint = eqx.field(static=True)

    def __call__(self, x):
        cell = eqx.Partial(lambda z, W, U, x: jnp.tanh(W @ z + U @ x), W=self.W, U=self.U, x=x)
        z = cj.FixedPoint(cell, adjoint=self.adjoint)(jnp.zeros(self.W.shape[0]))
        return self.v @ z


@pytest.mark.parametrize(
    "adjoint",
    [cj.Implicit(), cj.Implicit("dense"), cj.Phantom(3)],
    ids=["Implicit", "Implicit(dense)", "Phantom(3)"],
)
@pytest.mark.slow  # 40 adam steps each; tests/test_training.py trains the default quickly
def test_trains_in_the_equinox_optax_loop(adjoint, tmp_path):
    kw, ku, kv, kx = jax.random.split(jax.random.key(0), 4)
    W = jax.random.normal(kw, (16, 16))
    model = DEQ(
        0.4 * W / jnp.linalg.norm(W, 2),
        jax.random.normal(ku, (16, 2)) / 4,
        jax.random.normal(kv, (16,)) / 4,
        adjoint,
    )
    xs = jax.random.normal(kx, (64, 2))
    ys = jnp.sin(xs[:, 0]) + 0.5 * xs[:, 1]

    def loss(m):
        return jnp.mean((jax.vmap(m)(xs) - ys) ** 2)

    tx = optax.adam(1e-2)
    with jax.numpy_dtype_promotion("standard"):
        opt_state = tx.init(eqx.filter(model, eqx.is_inexact_array))

    @eqx.filter_jit
    def step(m, state):
        value, grads = eqx.filter_value_and_grad(loss)(m)
        updates, state = tx.update(grads, state, eqx.filter(m, eqx.is_inexact_array))
        return eqx.apply_updates(m, updates), state, value

    first = loss(model)
    with jax.numpy_dtype_promotion("standard"):  # optax mixes Python floats and int32 steps
        for _ in range(40):
            model, opt_state, _ = step(model, opt_state)
    assert loss(model) < 0.5 * first
    restored = serialise_roundtrip(model, tmp_path)
    np.testing.assert_allclose(loss(restored), loss(model), rtol=1e-6)


@pytest.mark.parametrize("mode", ["grad", "jacfwd"])
def test_default_adjoint_mixes_the_series_and_its_fallback_per_example(mode):
    """Under vmap, the default adjoint sums the Neumann series on the examples that contract
    strongly and falls back to the dense solve on the others (weak, oscillating, repelling):
    each example's derivative is exact, x* = (I - s W)^-1 u theta."""
    n = 6
    q, _ = jnp.linalg.qr(jax.random.normal(jax.random.key(3), (n, n)))
    W = q @ jnp.diag(jnp.linspace(-1.0, 1.0, n)) @ q.T  # symmetric, spectral radius 1
    u = jax.random.normal(jax.random.key(4), (n,))
    strengths = jnp.asarray([0.2, 0.5, 0.95, -0.9, 1.5, 0.1])

    def fixed_point(theta, s):
        cell = eqx.Partial(lambda x, s, theta: s * (W @ x) + u * theta, s=s, theta=theta)
        return cj.FixedPoint(cell, solver=cj.Newton())(jnp.zeros(n))

    def exact(s):
        return jnp.linalg.solve(jnp.eye(n) - s * W, u)

    if mode == "grad":
        ours = jax.vmap(jax.grad(lambda t, s: jnp.sum(fixed_point(t, s) * u)), (None, 0))
        expected = jax.vmap(lambda s: exact(s) @ u)(strengths)
    else:
        ours = jax.vmap(jax.jacfwd(fixed_point), (None, 0))
        expected = jax.vmap(exact)(strengths)
    # Accurate relative to each derivative's largest element (the solves' rtol is a norm's).
    scale = float(jnp.max(jnp.abs(expected)))
    np.testing.assert_allclose(ours(jnp.asarray(1.0), strengths), expected, atol=1e-5 * scale)
