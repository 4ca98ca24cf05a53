"""optimise_recipe: at least as good as scipy's L-BFGS-B from the same start, at a KKT point,
never outside its bounds, differentiable through the optimum, batched over customers."""

import equinox as eqx
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

import cakejax as cj


STARTS = {
    "the course's cake": [1.0, 3.0, 2.0, 1.5],
    "small amounts": [0.1, 0.1, 0.1, 0.1],
    "on the boundary (no flour)": [1.0, 3.0, 0.0, 1.5],
    "all zero": [0.0, 0.0, 0.0, 0.0],
    "far": [5.0, 0.5, 4.0, 3.0],
}


def _lbfgsb(score, x0, bounds):
    """scipy's L-BFGS-B on the same score; where it steps onto a point the model refuses
    (the infinite slope at flour = 0 sends it to NaN), that point scores -inf for it."""
    dtype = jnp.asarray(x0).dtype

    def negative(x):
        try:
            value, grad = jax.value_and_grad(score)(jnp.asarray(x, dtype))
        except Exception:  # noqa: BLE001 - the model's domain error
            return np.inf, np.zeros_like(x)
        return -float(value), -np.asarray(grad, np.float64)

    return scipy.optimize.minimize(
        negative, np.asarray(x0, np.float64), jac=True, method="L-BFGS-B", bounds=bounds
    )


@pytest.mark.parametrize("start", list(STARTS))
def test_at_least_as_good_as_lbfgsb(x64, start):
    score = cj.Deliciousness()
    x0 = jnp.asarray(STARTS[start], jnp.result_type(float))
    solution = cj.optimise_recipe(score, x0)
    reference = _lbfgsb(score, x0, [(0, None)] * 4)
    assert solution.result == cj.RecipeResult.successful
    assert np.all(np.asarray(solution.recipe) >= 0)
    np.testing.assert_allclose(solution.score, score(solution.recipe), rtol=1e-6)
    # At least L-BFGS-B's score, to the float precision of the score.
    eps = float(jnp.finfo(x0.dtype).eps)
    assert float(solution.score) >= -reference.fun - 64 * eps * abs(reference.fun)
    # First order (KKT): the gradient vanishes on the free amounts, relative to the scale
    # of the gradient at the start.
    g0 = float(jnp.max(jnp.abs(jax.grad(score)(x0 + 1.0))))
    assert float(solution.projected_gradient) <= (1e-3 if eps > 1e-10 else 1e-6) * g0


def test_the_course_optimum_in_float64(f64):
    # Every start reaches the same recipe: no flour (its cost's slope is infinite at 0, so
    # the bound holds it), butter 3.2e-5 (where its cost's slope 0.3 b^0.2 balances the
    # rest), and the rest interior.
    recipes = [
        cj.optimise_recipe(cj.Deliciousness(), jnp.asarray(x0)).recipe for x0 in STARTS.values()
    ]
    for recipe in recipes:
        np.testing.assert_allclose(recipe, recipes[0], rtol=1e-5, atol=1e-9)
    assert recipes[0][2] == 0.0
    np.testing.assert_allclose(recipes[0], [3.199e-5, 4.155, 0.0, 1.7076], rtol=1e-3)


def test_a_pantry_is_an_upper_bound(f64):
    pantry = jnp.asarray([jnp.inf, 2.0, jnp.inf, 1.0])
    solution = cj.optimise_recipe(
        cj.Deliciousness(), jnp.asarray([1.0, 1.0, 1.0, 0.5]), upper=pantry
    )
    recipe = np.asarray(solution.recipe)
    assert np.all(recipe <= np.asarray(pantry)) and np.all(recipe >= 0)
    np.testing.assert_array_equal(recipe[[1, 3]], [2.0, 1.0])  # both wanted more
    reference = _lbfgsb(
        cj.Deliciousness(),
        jnp.asarray([1.0, 1.0, 1.0, 0.5]),
        [(0, None), (0, 2.0), (0, None), (0, 1.0)],
    )
    assert float(solution.score) >= -reference.fun - 1e-9


def test_a_user_score_and_scales(f64):
    # A concave quadratic with its maximum at c > 0, scaled by 1e-12 .. 1e12: same recipe.
    c = jnp.asarray([0.5, 2.0, 3.0])
    for scale in (1e-12, 1.0, 1e12):
        solution = cj.optimise_recipe(lambda x, s=scale: -s * jnp.sum((x - c) ** 2), jnp.ones(3))
        np.testing.assert_allclose(solution.recipe, c, rtol=1e-7)


class _Quadratic(eqx.Module):
    """$-s\\,\\|A(x - c)\\|^2$: a module, so that one compilation serves every example."""

    a: jax.Array
    c: jax.Array
    scale: jax.Array

    def __call__(self, x):
        return -self.scale * jnp.sum((self.a @ (x - self.c)) ** 2)


@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(seed=st.integers(0, 2**32 - 1), exponent=st.sampled_from([-12, -6, 6, 12]))
def test_the_same_steps_in_any_units(x64, seed, exponent):
    # A concave quadratic in 10 ingredients with a pantry (upper = 4): some amounts end inside,
    # some on a bound. Its exact maximiser is a bounded least-squares problem (scipy's
    # lsq_linear). Scaling the score by 10^k changes neither the recipe nor the steps taken
    # (float32 at 1e-12 took 8x the steps, its CG curvatures underflowing, before the
    # subproblem was solved on g/|g|).
    rng = np.random.default_rng(seed)
    n = 10
    a = np.eye(n) + 0.3 * rng.normal(size=(n, n)) / np.sqrt(n)
    c = rng.uniform(-1.0, 6.0, n)
    best = scipy.optimize.lsq_linear(a, a @ c, bounds=(0.0, 4.0), tol=1e-14).x
    dtype = jnp.float64 if x64 else jnp.float32

    def solve(scale):
        score = _Quadratic(jnp.asarray(a, dtype), jnp.asarray(c, dtype), jnp.asarray(scale, dtype))
        return cj.optimise_recipe(score, jnp.ones(n, dtype), upper=4.0)

    unit, scaled = solve(1.0), solve(10.0**exponent)
    tolerance = 1e-6 if x64 else 1e-3
    np.testing.assert_allclose(scaled.recipe, best, rtol=0, atol=tolerance * 4.0)
    assert abs(int(scaled.steps) - int(unit.steps)) <= 2, (int(scaled.steps), int(unit.steps))


@pytest.mark.slow  # eager jacfwd, jacrev and grad; the next test has them in the quick part
def test_derivative_of_the_best_recipe(f64):
    # "How does the best recipe change if customers want it sweeter?"
    x0 = jnp.asarray([1.0, 3.0, 2.0, 1.5])

    def best(ideal):
        return cj.optimise_recipe(cj.Deliciousness(ideal_sweetness=ideal), x0).recipe

    h = 1e-4
    finite_difference = (best(10.0 + h) - best(10.0 - h)) / (2 * h)
    forward = jax.jacfwd(best)(10.0)
    np.testing.assert_allclose(forward, finite_difference, rtol=1e-5, atol=1e-10)
    np.testing.assert_allclose(jax.jacrev(best)(10.0), finite_difference, rtol=1e-5, atol=1e-10)
    assert forward[2] == 0.0  # flour is held at its bound
    # The best score's derivative is the score's own (envelope theorem).
    best_score = lambda s: cj.optimise_recipe(cj.Deliciousness(ideal_sweetness=s), x0).score
    np.testing.assert_allclose(
        jax.grad(best_score)(10.0),
        (best_score(10.0 + h) - best_score(10.0 - h)) / (2 * h),
        rtol=1e-6,
    )


def test_derivative_through_a_score_that_closes_over_its_parameters(f64):
    # A lambda closing over c (not a module with c as a leaf): max -|x - c|^2 over x >= 0 is
    # max(c, 0), so d(recipe)/dc is 1 where c > 0 and 0 where the bound holds (c < 0).
    c = jnp.asarray([0.5, 2.0, -1.0])

    def best(c):
        return cj.optimise_recipe(lambda x: -jnp.sum((x - c) ** 2), jnp.ones(3)).recipe

    expected = np.diag([1.0, 1.0, 0.0])
    np.testing.assert_allclose(best(c), [0.5, 2.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(jax.jacfwd(best)(c), expected, atol=1e-10)
    np.testing.assert_allclose(jax.jacrev(best)(c), expected, atol=1e-10)
    np.testing.assert_allclose(jax.jit(jax.jacfwd(best))(c), expected, atol=1e-10)


def test_per_customer_recipes_under_vmap_and_jit(f64):
    ideals = jnp.linspace(9.0, 11.0, 4)
    x0 = jnp.asarray([1.0, 3.0, 2.0, 1.5])

    def best(ideal):
        return cj.optimise_recipe(cj.Deliciousness(ideal_sweetness=ideal), x0).recipe

    batched = eqx.filter_jit(jax.vmap(best))(ideals)
    looped = jnp.stack([best(i) for i in ideals])
    np.testing.assert_allclose(batched, looped, rtol=1e-7, atol=1e-12)


def test_not_converging_raises_or_flags():
    x0 = jnp.asarray([1.0, 3.0, 2.0, 1.5])
    with pytest.raises(eqx.EquinoxRuntimeError, match="no convergence within max_steps"):
        cj.optimise_recipe(cj.Deliciousness(), x0, max_steps=2)
    solution = cj.optimise_recipe(cj.Deliciousness(), x0, max_steps=2, throw=False)
    assert solution.result == cj.RecipeResult.max_steps_reached
    assert np.all(np.asarray(solution.recipe) >= 0)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda: cj.optimise_recipe(cj.CakeProperties(), jnp.ones(4)),
            TypeError,
            "score must return a real scalar",
        ),
        (
            lambda: cj.optimise_recipe(cj.Deliciousness(), jnp.ones((2, 4))),
            TypeError,
            "parameter 'x0'",
        ),
        (
            lambda: cj.optimise_recipe(cj.Deliciousness(), jnp.ones(3)),
            TypeError,
            "parameter 'ingredients'",
        ),
        (
            lambda: cj.optimise_recipe(cj.Deliciousness(), jnp.asarray([1.0, -1.0, 2.0, 1.5])),
            eqx.EquinoxRuntimeError,
            "outside the bounds",
        ),
        (
            lambda: cj.optimise_recipe(cj.Deliciousness(), jnp.asarray([1.0, jnp.nan, 2.0, 1.5])),
            eqx.EquinoxRuntimeError,
            "NaN or infinite amounts",
        ),
        (
            lambda: cj.optimise_recipe(cj.Deliciousness(), jnp.ones(4), lower=2.0, upper=1.0),
            eqx.EquinoxRuntimeError,
            "lower bound is above its upper bound",
        ),
        (
            lambda: cj.optimise_recipe(cj.Deliciousness(), jnp.ones(4), upper=jnp.ones(3)),
            ValueError,
            "upper must be a number or of the recipe's shape",
        ),
        (
            lambda: cj.optimise_recipe(cj.Deliciousness(), jnp.ones(4), rtol=2.0),
            ValueError,
            "rtol must be a finite number > 0 and < 1",
        ),
    ],
    ids=[
        "score not scalar",
        "recipe not a vector",
        "recipe of 3 amounts",
        "negative start",
        "NaN start",
        "lower above upper",
        "bounds of the wrong shape",
        "bad rtol",
    ],
)
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_callback_sees_every_step():
    seen = []
    solution = cj.optimise_recipe(
        cj.Deliciousness(),
        jnp.asarray([1.0, 3.0, 2.0, 1.5]),
        callback=lambda step, recipe, value: seen.append((int(step), float(value))),
    )
    jax.effects_barrier()
    assert [step for step, _ in seen] == list(range(1, int(solution.steps) + 1))
    values = [value for _, value in seen]
    assert all(
        b >= a for a, b in zip(values, values[1:], strict=False)
    )  # accepted steps only go up
    np.testing.assert_allclose(values[-1], solution.score, rtol=1e-6)


def test_a_callback_that_raises_raises_its_own_error():
    """The callback's exception, as itself (not XLA's "CpuCallback error"), at the step it
    raised; the next solve with the same callback runs and raises again."""

    class Stop(Exception):
        pass

    seen = []

    def stop_at_three(step, recipe, value):
        seen.append(int(step))
        if step == 3:
            raise Stop("enough")

    for _ in range(2):
        seen.clear()
        with pytest.raises(Stop, match="enough") as info:
            cj.optimise_recipe(cj.Deliciousness(), jnp.ones(4), callback=stop_at_three)
        assert "callback given to optimise_recipe" in info.value.__notes__[0]
        assert seen == [1, 2, 3]


def test_many_customers_all_converge():
    # Customers' ideals drawn around the course's, in float32: every one converges (the
    # ratio test no longer stalls once the predicted decrease is below rounding).
    key_s, key_f = jax.random.split(jax.random.key(0))
    ideals = 10.0 + jax.random.normal(key_s, (512,))
    fluffy = 5.0 + 0.5 * jax.random.normal(key_f, (512,))
    scores = eqx.filter_vmap(lambda s, f: cj.Deliciousness(ideal_sweetness=s, ideal_fluffiness=f))(
        ideals, fluffy
    )
    solution = cj.optimise_recipes(scores, jnp.asarray([1.0, 3.0, 2.0, 1.5]), throw=False)
    assert bool(jnp.all(solution.result == cj.RecipeResult.successful))
    assert bool(jnp.all(solution.recipe >= 0))


def test_bake_command(tmp_path):
    from cakejax import _bake_command

    lines = []
    png = tmp_path / "path.png"
    assert _bake_command.run(customers=64, plot=str(png), chunk=32, output=lines.append) == 0
    lines = "\n".join(lines).splitlines()
    assert lines[0].startswith("The course's cake: deliciousness -3.1900 -> -1.4963")
    flour = next(line for line in lines if line.split()[:1] == ["flour"])
    assert flour.split()[1:] == ["2.0000", "0"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert lines[-1].startswith("64 customers' recipes: 64 converged")


def test_bake_command_pads_the_last_chunk(tmp_path):
    """70 customers at most 32 a chunk: 3 chunks of 24, the last padded by 2 that are not
    counted, one program compiled, its time reported apart from the run's."""
    from cakejax import _bake_command

    lines = []
    assert _bake_command.run(customers=70, chunk=32, output=lines.append) == 0
    compiled = [line for line in lines if line.startswith("compiled")]
    assert compiled == [compiled[0]] and "24 customers a chunk" in compiled[0], lines
    assert lines[-1].startswith("70 customers' recipes: 70 converged, in "), lines
    assert lines[-1].endswith("customers/s, compile time excluded)"), lines


@pytest.mark.parametrize(
    "name, message",
    [
        ("", "the path is empty"),
        ("missing/plot.png", "the folder .* does not exist"),
        ("plot.docx", "its extension must name an image format"),
        (".", "its extension must name an image format"),
        ("folder.png", "Is a directory"),
    ],
)
def test_bake_plot_path_is_checked_before_the_work(tmp_path, name, message):
    from cakejax import _bake_command

    (tmp_path / "folder.png").mkdir()
    lines = []
    with pytest.raises(SystemExit, match=f"--plot: .*{message}"):
        _bake_command.run(plot=str(tmp_path / name) if name else "", output=lines.append)
    assert lines == []


def test_bake_plot_without_matplotlib_stops_before_the_work(monkeypatch):
    # Without the plot extra, --plot is refused at once, not after the optimisation.
    import sys

    from cakejax import _bake_command

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    lines = []
    with pytest.raises(SystemExit, match=r"pip install 'cakejax\[plot\]'"):
        _bake_command.run(plot="never.png", output=lines.append)
    assert lines == []
