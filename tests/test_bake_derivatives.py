"""The optimum's derivative (issue 30): forward and reverse mode agree with the reduced KKT
system on coupled problems, reverse mode is finite where a bound holds an amount at an
infinite slope, and a non-isolated optimum has no derivative (an error, or NaN)."""

import equinox as eqx
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import cakejax as cj


def _coupled_problem(seed, n, held):
    """A concave quadratic score -(x·Ax)/2 + b·x on x >= 0 with a coupled SPD A, built around
    its optimum: x* > 0 on the free amounts, 0 on `held` of them with the gradient pushing
    them onto the bound (strict complementarity), so the active set is known."""
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n, n))
    a = q @ q.T / n + 0.2 * np.eye(n)
    x_star = rng.uniform(0.5, 2.0, n)
    active = np.zeros(n, bool)
    active[rng.choice(n, held, replace=False)] = True
    x_star[active] = 0.0
    push = np.where(active, rng.uniform(0.5, 2.0, n), 0.0)  # ∇f on the held amounts
    b = a @ x_star - push
    return a, b, x_star, active


@pytest.mark.usefixtures("x64")
@hypothesis.settings(max_examples=8, deadline=None)
@hypothesis.given(seed=st.integers(0, 2**31 - 1), n=st.integers(2, 10), held=st.integers(0, 2))
def test_derivative_on_coupled_problems_matches_the_reduced_kkt_system(seed, n, held):
    """d x*/d b by jacfwd and by jacrev against jnp.linalg.solve on the free block:
    A_FF dx_F = db_F, dx_A = 0 (GMRES broke down on every such problem before)."""
    dtype = jnp.result_type(float)
    a, b, x_star, active = _coupled_problem(seed, n, held)
    a_j = jnp.asarray(a, dtype)

    def best(b):
        return cj.optimise_recipe(lambda x: -0.5 * x @ a_j @ x + b @ x, jnp.ones(n, dtype)).recipe

    b_j = jnp.asarray(b, dtype)
    free = ~active
    expected = np.zeros((n, n))
    expected[np.ix_(free, free)] = np.linalg.inv(a[np.ix_(free, free)])
    tol = 1e-7 if dtype == jnp.float64 else 2e-3
    scale = np.abs(expected).max()
    np.testing.assert_allclose(jax.jit(best)(b_j), x_star, atol=tol * 10 * x_star.max())
    np.testing.assert_allclose(jax.jit(jax.jacfwd(best))(b_j), expected, atol=tol * scale)
    np.testing.assert_allclose(jax.jit(jax.jacrev(best))(b_j), expected, atol=tol * scale)


def test_reverse_mode_is_finite_at_an_infinite_slope(x64):
    """The course's score holds flour at 0, where flour^0.9 has an infinite slope: jacrev of
    the optimum in all three preferences was NaN in the cost weight's column; it equals
    jacfwd's, and the cost weight's column is finite and nonzero."""
    x0 = cj.ingredients(butter=1.0, eggs=3.0, flour=2.0, sugar=1.5)

    def best(p):
        score = cj.Deliciousness(ideal_sweetness=p[0], ideal_fluffiness=p[1], cost_weight=p[2])
        return cj.optimise_recipe(score, x0).recipe

    p = jnp.asarray([10.0, 5.0, 0.5], x0.dtype)
    reverse, forward = jax.jit(jax.jacrev(best))(p), jax.jit(jax.jacfwd(best))(p)
    assert bool(jnp.isfinite(reverse).all())
    tol = 1e-9 if x0.dtype == jnp.float64 else 1e-5
    np.testing.assert_allclose(reverse, forward, atol=tol * float(jnp.abs(forward).max()))
    assert float(jnp.abs(reverse[:, 2]).max()) > 1e-3
    assert bool((reverse[2] == 0).all())  # flour is held at its bound


@pytest.mark.parametrize("n", [2, 5])
def test_a_non_isolated_optimum_has_no_derivative(n):
    """max -(w·x - c)^2 is a whole plane of optima: no derivative in c. It raises in forward
    and reverse mode, eagerly and under jit; with throw=False it is NaN and the result says
    why; under vmap only the affected examples are NaN."""
    w = jnp.linspace(0.5, 1.5, n)

    def best(c, throw=True):
        return cj.optimise_recipe(lambda x: -((w @ x - c) ** 2), jnp.ones(n), throw=throw)

    for transform in (jax.jacfwd, jax.jacrev):
        with pytest.raises(eqx.EquinoxRuntimeError, match="not a strict local maximum"):
            transform(lambda c: best(c).recipe)(3.0)
        with pytest.raises(eqx.EquinoxRuntimeError, match="not a strict local maximum"):
            eqx.filter_jit(transform(lambda c: best(c).recipe))(3.0)
    value, tangent = jax.jit(lambda c: jax.jvp(lambda c: best(c, False), (c,), (1.0,)))(3.0)
    assert bool(jnp.isnan(tangent.recipe).all())
    assert value.result == cj.RecipeResult.singular
    assert bool(jnp.isfinite(value.recipe).all())

    def isolated_or_not(c, k):
        # k = 0: the plane of optima; k = 1: a strictly concave score, whose derivative exists.
        score = lambda x: -((w @ x - c) ** 2) - k * jnp.sum((x - c) ** 2)  # noqa: E731
        return cj.optimise_recipe(score, jnp.ones(n), throw=False).recipe

    grads = jax.jit(jax.vmap(jax.jacfwd(isolated_or_not)))(
        jnp.full(2, 3.0), jnp.asarray([0.0, 1.0])
    )
    assert bool(jnp.isnan(grads[0]).all()) and bool(jnp.isfinite(grads[1]).all())


@pytest.mark.slow  # a compilation per draw
@pytest.mark.usefixtures("f64")
@hypothesis.settings(max_examples=4, deadline=None)
@hypothesis.given(seed=st.integers(0, 2**31 - 1), n=st.integers(2, 6), held=st.integers(0, 2))
def test_check_grads_on_the_optimum(seed, n, held):
    """`jax.test_util.check_grads` (finite differences, forward and reverse mode) on the
    optimum of a coupled, non-quadratic score, -(x·Ax)/2 + b·x - (x·x)^2/20, in b and in A's
    scale, with amounts held at their bound: differentiable there (a strict maximum, strict
    complementarity), so the implicit derivative must match the differences (float64: they
    need the precision)."""
    a, b, _, _ = _coupled_problem(seed, n, held)
    a_j, b_j = jnp.asarray(a), jnp.asarray(b)

    def best(b, k):
        def score(x):
            return -0.5 * k * x @ a_j @ x + b @ x - 0.05 * (x @ x) ** 2

        solution = cj.optimise_recipe(score, jnp.ones(n))
        return solution.recipe, solution.score

    check_grads(best, (b_j, jnp.asarray(1.0)), order=1, modes=("fwd", "rev"))
