"""`python -m cakejax tour`: the course run through cakejax, every printed number checked."""

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import cakejax as cj

from . import _course as course
from .examples import BUTTER, cake, dough_maturity, like_data


@dataclasses.dataclass(frozen=True)
class Check:
    """One result of the tour: what cakejax computes beside what the course printed."""

    part: str
    name: str
    ours: Any
    course: Any
    note: str = ""
    source: str = "course"  # where the expected value comes from: "course" or "analytic"

    @property
    def ok(self) -> bool:
        ours = np.asarray(self.ours)
        expected = np.asarray(self.course)
        return ours.shape == expected.shape and bool(
            np.allclose(ours, expected, rtol=course.RTOL, atol=course.ATOL)
        )


def _jit(f: Callable[..., Any]) -> Callable[..., Any]:
    """`f` compiled as one XLA program. Run eagerly, each primitive of each check compiles a
    program of its own (hundreds in all): the tour's time is compile time."""
    # `equinox.filter_jit` for errors raised inside (`eqx.error_if`) that name their cause; the
    # lambda, as filter_jit warns of a jax-transformed callable stored on it.
    return eqx.filter_jit(lambda *args: f(*args))


def part1() -> Iterator[Check]:
    part = "Part 1: The Basics"
    yield Check(part, "d/dx tanh(x) at x = 2", _jit(jax.grad(jnp.tanh))(2.0), course.TANH_GRAD_AT_2)
    quality = cj.Polynomial.cake_quality()
    for n, expected in enumerate(course.POLY_DERIVATIVES, start=1):
        ours = _jit(cj.nth_derivative(quality, n))(course.POLY_X)
        yield Check(part, f"cake quality x³+2x²−3x+1: derivative {n} at x = 1", ours, expected)

    model, features, likes = like_data()
    loss, grads = _jit(eqx.filter_value_and_grad(cj.like_loss))(model, features, likes)
    yield Check(part, "like model: loss (stable, no epsilon)", loss, course.LIKE_LOSS)
    yield Check(part, "like model: dloss/dweights", grads.weights, course.LIKE_GRAD_WEIGHTS)
    yield Check(part, "like model: dloss/dbias", grads.bias, course.LIKE_GRAD_BIAS)


def part2() -> Iterator[Check]:
    part = "Part 2: Advanced Baking"
    x = cake()
    properties = cj.CakeProperties()
    yield Check(
        part,
        "cake properties (sweetness, fluffiness, cost)",
        _jit(properties)(x),
        course.PROPERTIES_AT_CAKE,
    )
    yield Check(
        part,
        "Jacobian, forward mode (jacfwd)",
        _jit(jax.jacfwd(properties))(x),
        course.JACOBIAN_AT_CAKE,
    )
    yield Check(
        part,
        "Jacobian, reverse mode (jacrev)",
        _jit(jax.jacrev(properties))(x),
        course.JACOBIAN_AT_CAKE,
    )
    tangent = jnp.asarray(course.JVP_TANGENT, dtype=x.dtype)
    yield Check(
        part,
        "JVP  J·v",
        jax.jvp(properties, (x,), (tangent,))[1],
        course.JVP_OUT,
    )
    cotangent = jnp.asarray(course.VJP_COTANGENT, dtype=x.dtype)
    yield Check(
        part,
        "VJP  vᵀ·J",
        jax.vjp(properties, x)[1](cotangent)[0],
        course.VJP_OUT,
    )
    score = cj.Deliciousness()
    yield Check(
        part,
        "Hessian of the deliciousness score",
        _jit(jax.hessian(score))(x),
        course.HESSIAN_AT_CAKE,
    )
    direction = jnp.asarray(course.HVP_DIRECTION, dtype=x.dtype)
    yield Check(
        part,
        "Hessian-vector product H·v (no Hessian formed)",
        _jit(cj.hvp)(score, x, direction),
        course.HVP_OUT,
    )
    yield Check(
        part,
        "fluffiness loss gradient",
        _jit(jax.grad(cj.FluffinessLoss(False)))(x),
        course.FLUFFINESS_GRAD,
    )
    yield Check(
        part,
        "fluffiness loss gradient, target's gradient stopped",
        _jit(jax.grad(cj.FluffinessLoss(True)))(x),
        course.FLUFFINESS_GRAD_STOPPED,
    )
    targets = jnp.asarray(course.TARGET_SWEETNESS, dtype=x.dtype)
    yield Check(
        part,
        "per-customer gradients (vmap of grad)",
        _jit(cj.per_example_grad)(cj.SweetnessError(), x, targets),
        course.PER_CUSTOMER_GRADS,
    )


def _raises(f: Callable[[], Any]) -> bool:
    try:
        jax.block_until_ready(f())
    except eqx.EquinoxRuntimeError:
        return True
    return False


def part3() -> Iterator[Check]:
    part = "Part 3: Exotic Flavors (complex numbers)"
    z = course.VIBRATION_Z
    score = cj.VibrationScore()
    yield Check(
        part, "vibration score 3·Re(z) − |z|² at z = 2+1j", _jit(score)(z), course.VIBRATION_SCORE
    )
    jax_grad = _jit(jax.grad(score))(z)
    yield Check(part, "jax.grad of the vibration score", jax_grad, course.VIBRATION_JAX_GRAD)
    ascent = _jit(cj.ascent_direction)(score, z)
    yield Check(
        part,
        "ascent direction ∂ₓf + i∂ᵧf (jax.grad gives its conjugate)",
        ascent,
        -1.0 - 2.0j,
        source="analytic",
        note="the course says jax.grad points uphill; it does not. A step of 1e-2: "
        f"along the ascent direction the score goes to {score(z + 1e-2 * ascent):.5f}, "
        f"along jax.grad's answer to {score(z + 1e-2 * jax_grad):.5f}",
    )
    smooth = cj.SmoothMagic()
    yield Check(part, "smooth magic z² + z at 2+1j", _jit(smooth)(z), course.SMOOTH_MAGIC_VALUE)
    yield Check(
        part,
        "its derivative, holomorphic_grad",
        _jit(cj.holomorphic_grad(smooth))(z),
        course.SMOOTH_MAGIC_DERIVATIVE,
    )
    yield Check(
        part,
        "Wirtinger (∂f/∂z, ∂f/∂z̄) of z² + z",
        _jit(cj.wirtinger)(smooth, z),
        (5.0 + 2.0j, 0.0),
        source="analytic",
    )
    tricky = cj.TrickyMagic()
    yield Check(
        part,
        "jax.grad(conj, holomorphic=True): a misleading number",
        _jit(jax.grad(tricky, holomorphic=True))(z),
        course.TRICKY_MAGIC_HOLOMORPHIC_GRAD,
    )
    yield Check(
        part,
        "holomorphic_grad(conj) refuses: conj has no complex derivative",
        _raises(lambda: _jit(cj.holomorphic_grad(tricky))(z)),
        True,
        source="analytic",
    )
    yield Check(
        part,
        "Jacobian of conj seen as R² → R² at 1.2+0.5j",
        _jit(cj.complex_jacobian)(tricky, course.TRICKY_JACOBIAN_Z),
        course.TRICKY_JACOBIAN,
    )
    yield Check(
        part,
        "Wirtinger (∂f/∂z, ∂f/∂z̄) of conj",
        _jit(cj.wirtinger)(tricky, z),
        (0.0, 1.0),
        source="analytic",
    )
    stability = cj.FlavorStability()
    yield Check(
        part,
        "flavor stability Re|1 + i·x|² at x = 3",
        _jit(stability)(course.STABILITY_X),
        course.STABILITY,
    )
    yield Check(
        part,
        "its gradient (R → C → R)",
        _jit(jax.grad(stability))(course.STABILITY_X),
        course.STABILITY_GRAD,
    )


def part4() -> Iterator[Check]:
    part = "Part 4: Secret Family Recipes (custom derivative rules)"
    yeast = cj.YeastActivity()
    hot = course.YEAST_HOT
    yield Check(
        part,
        "yeast activity at 500, stable softplus",
        _jit(yeast)(hot),
        hot,
        source="analytic",
        note=f"the course's log(1 + exp(x)) prints {course.YEAST_ACTIVITY_HOT} here",
    )
    yield Check(
        part, "its gradient at 500 (custom_jvp)", _jit(jax.grad(yeast))(hot), course.YEAST_GRAD_HOT
    )
    yield Check(
        part,
        "its second derivative at 500, finite",
        _jit(jax.grad(jax.grad(yeast)))(hot),
        0.0,
        source="analytic",
    )
    x = cake()
    score = cj.Deliciousness()
    yield Check(
        part,
        "deliciousness gradient, unclipped",
        _jit(jax.grad(score))(x),
        course.DELICIOUSNESS_GRAD,
    )
    clip = cj.GradientClip(course.BUTTER_CLIP, mask=BUTTER)
    yield Check(
        part,
        "gradient with the butter component clipped to ±0.1 (custom_vjp)",
        _jit(jax.grad(lambda v: score(clip(v))))(x),
        course.CLIPPED_GRAD,
    )
    reversal = cj.GradientReversal()
    yield Check(
        part,
        "the same gradient through GradientReversal: the course's, negated",
        _jit(jax.grad(lambda v: score(reversal(v))))(x),
        -np.asarray(course.DELICIOUSNESS_GRAD),
        source="course",
    )
    half = cj.GradientScale(0.5)
    yield Check(
        part,
        "through GradientScale(0.5), in forward mode (jacfwd): half the course's",
        _jit(jax.jacfwd(lambda v: score(half(v))))(x),
        0.5 * np.asarray(course.DELICIOUSNESS_GRAD),
        source="course",
    )
    rounded = cj.StraightThrough(jnp.round)
    yield Check(
        part,
        "a cake of whole units through StraightThrough(round): the score's "
        "gradient at round(x), as if rounding were the identity",
        jax.grad(lambda v: score(rounded(v)))(x + 0.3),
        jax.grad(score)(jnp.round(x + 0.3)),
        source="analytic",
    )
    a, b = course.DOUGH_PARAMS

    params = jnp.asarray(course.DOUGH_PARAMS, dtype=x.dtype)

    def derivatives(p):
        maturity, gradient = jax.value_and_grad(dough_maturity)(p)
        along_retention = jax.jvp(dough_maturity, (p,), (jnp.asarray([1.0, 0.0], p.dtype),))[1]
        scaled = jax.grad(lambda q: 1e-7 * dough_maturity(q))(p)
        return maturity, gradient, jax.hessian(dough_maturity)(p), along_retention, scaled

    maturity, gradient, hessian, along_retention, scaled = _jit(derivatives)(params)
    yield Check(
        part,
        "final dough maturity, the fixed point of m ↦ a·m + b",
        maturity,
        b / (1 - a),
        source="analytic",
    )
    yield Check(
        part,
        "its gradient w.r.t. (retention, boost), implicit function theorem",
        gradient,
        course.DOUGH_GRAD,
    )
    yield Check(
        part,
        "its Hessian: the course's custom_vjp version cannot compute this",
        hessian,
        ((2 * b / (1 - a) ** 3, 1 / (1 - a) ** 2), (1 / (1 - a) ** 2, 0.0)),
        source="analytic",
    )
    yield Check(
        part,
        "forward mode (jvp along retention): impossible with the course's rule",
        along_retention,
        b / (1 - a) ** 2,
        source="analytic",
    )
    yield Check(
        part,
        "scale-invariant: d(1e-7 · m*)/db, exact at any loss scale",
        scaled[1],
        1e-7 / (1 - a),
        source="analytic",
    )
    repelling = (1.5, b)

    def repelling_maturity(p):
        return dough_maturity(p, solver=cj.Newton())

    maturity, gradient = _jit(jax.value_and_grad(repelling_maturity))(
        jnp.asarray(repelling, dtype=x.dtype)
    )
    yield Check(
        part,
        "a = 1.5 repels: Newton still finds m* = b / (1 - a)",
        maturity,
        b / (1 - repelling[0]),
        source="analytic",
    )
    yield Check(
        part,
        "and its gradient (b / (1 - a)², 1 / (1 - a))",
        gradient,
        (b / (1 - repelling[0]) ** 2, 1 / (1 - repelling[0])),
        source="analytic",
    )
    yield Check(
        part,
        "a = -1 with Picard iteration oscillates: FixedPoint raises",
        _raises(
            lambda: _jit(lambda p: dough_maturity(p, solver=cj.Picard()))(
                jnp.asarray((-1.0, b), x.dtype)
            )
        ),
        True,
        source="analytic",
    )
    yield Check(
        part,
        "a = 1, b = 0 (every m is fixed): the derivative raises, in jvp too",
        _raises(
            lambda: _jit(lambda p, t: jax.jvp(dough_maturity, (p,), (t,)))(
                jnp.asarray((1.0, 0.0), dtype=x.dtype), jnp.asarray((1.0, 0.0), dtype=x.dtype)
            )
        ),
        True,
        source="analytic",
    )


def part5() -> Iterator[Check]:
    part = "The end of the story: the best cake (Hessian-vector products, trust region)"
    x = cake()
    score = cj.Deliciousness()
    ideal = jnp.asarray(10.0, x.dtype)  # the Deliciousness default, a variable here

    def best_recipe(ideal):
        best = cj.optimise_recipe(cj.Deliciousness(ideal_sweetness=ideal), x)
        return best.recipe, best.score

    # The optimum and its derivative along the ideal sweetness (what jax.jacfwd gives for a
    # scalar input) from one compiled program: jvp returns both.
    (recipe, best_score), (d_recipe, _) = _jit(
        lambda s: jax.jvp(best_recipe, (s,), (jnp.ones_like(s),))
    )(ideal)
    yield Check(
        part,
        "optimise_recipe from the course's cake: a better score, amounts >= 0",
        (bool(best_score > score(x)), bool(jnp.all(recipe >= 0))),
        (True, True),
        source="analytic",
        note=f"{float(score(x)):.4f} -> {float(best_score):.4f}, "
        f"recipe [{', '.join(f'{v:.5g}' for v in np.asarray(recipe))}]",
    )
    yield Check(
        part,
        "no flour: its cost's slope is infinite at 0, so the bound holds it",
        recipe[2],
        0.0,
        source="analytic",
    )

    # The implicit function theorem by hand, densely: on the free amounts (flour is held at
    # 0), H_FF dx_F = -d(grad s)_F / d(ideal sweetness).
    def by_hand(x_best):
        free = x_best > 0
        hessian = jax.hessian(score)(x_best)
        mixed = jax.jacfwd(lambda s: jax.grad(cj.Deliciousness(ideal_sweetness=s))(x_best))(ideal)
        block = jnp.where(free[:, None] & free[None, :], hessian, jnp.eye(4, dtype=x.dtype))
        return jnp.linalg.solve(block, -jnp.where(free, mixed, 0))

    yield Check(
        part,
        "d(best recipe)/d(ideal sweetness) by implicit differentiation (the reduced Hessian "
        "from Hessian-vector products, Cholesky-factorised) = jnp.linalg.solve by hand",
        d_recipe,
        _jit(by_hand)(recipe),
        source="analytic",
    )


PARTS: tuple[Callable[[], Iterator[Check]], ...] = (part1, part2, part3, part4, part5)


def checks() -> list[Check]:
    """Every check of the tour, in the course's order."""
    return [check for part in PARTS for check in part()]


def _format(value: Any) -> str:
    array = np.asarray(value)
    text = np.array2string(array, precision=8, separator=", ", max_line_width=120)
    return text.replace("\n", "\n" + " " * 15)


def run(print_fn: Callable[[str], None] = print) -> bool:
    """Prints the tour; returns whether every check agrees with the course."""
    dtype = jnp.result_type(float)
    print_fn(f"Baking with JAX Autodiff, run through cakejax ({dtype}, {jax.default_backend()})")
    current = None
    results = []
    for check in checks():
        if check.part != current:
            current = check.part
            print_fn(f"\n{current}")
        results.append(check.ok)
        print_fn(f"  {'✓' if check.ok else '✗'} {check.name}")
        print_fn(f"      {'cakejax':<9}{_format(check.ours)}")
        print_fn(f"      {check.source:<9}{_format(check.course)}")
        if check.note:
            print_fn(f"      {'note':<9}{check.note}")
    passed = sum(results)
    print_fn(f"\n{passed}/{len(results)} results agree with the course (and the analytic values).")
    return passed == len(results)
