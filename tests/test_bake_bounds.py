"""optimise_recipe's bounds (issue 30, class 6): no bound, an upper bound alone and mixed
bounds work; NaN bounds are refused; a NaN parameter of the score is reported as such, per
customer under vmap with throw=False."""

import equinox as eqx
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cakejax as cj


@pytest.mark.usefixtures("x64")
@hypothesis.settings(max_examples=10, deadline=None)
@hypothesis.given(
    seed=st.integers(0, 2**31 - 1),
    kinds=st.lists(st.sampled_from(["none", "lower", "upper", "both"]), min_size=2, max_size=5),
)
def test_any_mix_of_bounds_reaches_the_clipped_optimum(seed, kinds):
    """max -|x - c|^2 within per-amount bounds (none, below, above, both; None and ±inf
    alike) is c clipped to them, from a start inside them."""
    dtype = jnp.result_type(float)
    rng = np.random.default_rng(seed)
    n = len(kinds)
    c = rng.uniform(-5, 5, n)
    lo = np.where(np.isin(kinds, ["lower", "both"]), rng.uniform(-3, 0, n), -np.inf)
    hi = np.where(np.isin(kinds, ["upper", "both"]), rng.uniform(0.5, 3, n), np.inf)
    x0 = np.clip(np.zeros(n), lo, hi)
    c_j, lo_j, hi_j = (jnp.asarray(v, dtype) for v in (c, lo, hi))
    best = cj.optimise_recipe(
        lambda x: -jnp.sum((x - c_j) ** 2), jnp.asarray(x0, dtype), lower=lo_j, upper=hi_j
    )
    tol = 1e-6 if dtype == jnp.float64 else 1e-3
    np.testing.assert_allclose(best.recipe, np.clip(c, lo, hi), atol=tol * 5)
    # Within the bounds as the solver sees them (in its dtype).
    assert bool(jnp.all((best.recipe >= lo_j) & (best.recipe <= hi_j)))


def test_no_bound_by_none_or_minus_infinity():
    score = lambda x: -jnp.sum((x + 2.0) ** 2)  # noqa: E731 - the optimum is at -2
    for lower in (None, -jnp.inf):
        np.testing.assert_allclose(
            cj.optimise_recipe(score, jnp.ones(2), lower=lower).recipe, [-2.0, -2.0], atol=1e-3
        )


def test_a_fixed_amount_stays_fixed():
    """lower = upper for an amount (it is not for sale): it stays there, the others move."""
    best = cj.optimise_recipe(
        lambda x: -jnp.sum((x - 2.0) ** 2),
        jnp.asarray([1.0, 1.0]),
        lower=jnp.asarray([1.0, 0.0]),
        upper=jnp.asarray([1.0, jnp.inf]),
    )
    np.testing.assert_allclose(best.recipe, [1.0, 2.0], atol=1e-3)
    assert float(best.recipe[0]) == 1.0


def test_nan_bounds_are_refused():
    with pytest.raises(eqx.EquinoxRuntimeError, match="a bound is NaN"):
        cj.optimise_recipe(lambda x: -jnp.sum(x**2), jnp.ones(2), lower=jnp.nan)
    with pytest.raises(eqx.EquinoxRuntimeError, match="a bound is NaN"):
        cj.optimise_recipe(lambda x: -jnp.sum(x**2), jnp.ones(2), upper=jnp.asarray([jnp.nan, 1]))


def test_a_nan_parameter_is_reported_as_the_scores_per_customer():
    """A NaN in the score's parameters was reported as "ingredient amounts must be finite"
    (the search stepped to NaN amounts) and raised for the whole vmapped batch even with
    throw=False: now that customer alone is non_finite and the others are solved."""
    x0 = cj.ingredients(butter=1.0, eggs=3.0, flour=2.0, sugar=1.5)
    with pytest.raises(eqx.EquinoxRuntimeError, match="a parameter of the score is NaN"):
        cj.optimise_recipe(cj.Deliciousness(ideal_sweetness=jnp.asarray(jnp.nan)), x0)

    def best(ideal):
        return cj.optimise_recipe(cj.Deliciousness(ideal_sweetness=ideal), x0, throw=False)

    solutions = jax.jit(jax.vmap(best))(jnp.asarray([10.0, jnp.nan, 9.0]))
    flags = [bool(r) for r in solutions.result == cj.RecipeResult.successful]
    assert flags == [True, False, True]
    assert bool((solutions.result == cj.RecipeResult.non_finite)[1])
    np.testing.assert_allclose(solutions.recipe[0], best(10.0).recipe, rtol=1e-5, atol=1e-6)
