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


def part1() -> Iterator[Check]:
    part = "Part 1: The Basics"
    yield Check(part, "d/dx tanh(x) at x = 2", jax.grad(jnp.tanh)(2.0), course.TANH_GRAD_AT_2)
    quality = cj.Polynomial.cake_quality()
    for n, expected in enumerate(course.POLY_DERIVATIVES, start=1):
        ours = cj.nth_derivative(quality, n)(course.POLY_X)
        yield Check(part, f"cake quality x³+2x²−3x+1: derivative {n} at x = 1", ours, expected)

    model, features, likes = like_data()
    loss, grads = eqx.filter_value_and_grad(cj.like_loss)(model, features, likes)
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
        properties(x),
        course.PROPERTIES_AT_CAKE,
    )
    yield Check(
        part, "Jacobian, forward mode (jacfwd)", jax.jacfwd(properties)(x), course.JACOBIAN_AT_CAKE
    )
    yield Check(
        part, "Jacobian, reverse mode (jacrev)", jax.jacrev(properties)(x), course.JACOBIAN_AT_CAKE
    )
    tangent = jnp.asarray(course.JVP_TANGENT, dtype=x.dtype)
    yield Check(part, "JVP  J·v", jax.jvp(properties, (x,), (tangent,))[1], course.JVP_OUT)
    cotangent = jnp.asarray(course.VJP_COTANGENT, dtype=x.dtype)
    yield Check(part, "VJP  vᵀ·J", jax.vjp(properties, x)[1](cotangent)[0], course.VJP_OUT)
    score = cj.Deliciousness()
    yield Check(
        part, "Hessian of the deliciousness score", jax.hessian(score)(x), course.HESSIAN_AT_CAKE
    )
    direction = jnp.asarray(course.HVP_DIRECTION, dtype=x.dtype)
    yield Check(
        part,
        "Hessian-vector product H·v (no Hessian formed)",
        cj.hvp(score, x, direction),
        course.HVP_OUT,
    )
    yield Check(
        part,
        "fluffiness loss gradient",
        jax.grad(cj.FluffinessLoss(False))(x),
        course.FLUFFINESS_GRAD,
    )
    yield Check(
        part,
        "fluffiness loss gradient, target's gradient stopped",
        jax.grad(cj.FluffinessLoss(True))(x),
        course.FLUFFINESS_GRAD_STOPPED,
    )
    targets = jnp.asarray(course.TARGET_SWEETNESS, dtype=x.dtype)
    yield Check(
        part,
        "per-customer gradients (vmap of grad)",
        cj.per_example_grad(cj.SweetnessError(), x, targets),
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
        part, "vibration score 3·Re(z) − |z|² at z = 2+1j", score(z), course.VIBRATION_SCORE
    )
    jax_grad = jax.grad(score)(z)
    yield Check(part, "jax.grad of the vibration score", jax_grad, course.VIBRATION_JAX_GRAD)
    ascent = cj.ascent_direction(score, z)
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
    yield Check(part, "smooth magic z² + z at 2+1j", smooth(z), course.SMOOTH_MAGIC_VALUE)
    yield Check(
        part,
        "its derivative, holomorphic_grad",
        cj.holomorphic_grad(smooth)(z),
        course.SMOOTH_MAGIC_DERIVATIVE,
    )
    yield Check(
        part,
        "Wirtinger (∂f/∂z, ∂f/∂z̄) of z² + z",
        cj.wirtinger(smooth, z),
        (5.0 + 2.0j, 0.0),
        source="analytic",
    )
    tricky = cj.TrickyMagic()
    yield Check(
        part,
        "jax.grad(conj, holomorphic=True): a misleading number",
        jax.grad(tricky, holomorphic=True)(z),
        course.TRICKY_MAGIC_HOLOMORPHIC_GRAD,
    )
    yield Check(
        part,
        "holomorphic_grad(conj) refuses: conj has no complex derivative",
        _raises(lambda: cj.holomorphic_grad(tricky)(z)),
        True,
        source="analytic",
    )
    yield Check(
        part,
        "Jacobian of conj seen as R² → R² at 1.2+0.5j",
        cj.complex_jacobian(tricky, course.TRICKY_JACOBIAN_Z),
        course.TRICKY_JACOBIAN,
    )
    yield Check(
        part,
        "Wirtinger (∂f/∂z, ∂f/∂z̄) of conj",
        cj.wirtinger(tricky, z),
        (0.0, 1.0),
        source="analytic",
    )
    stability = cj.FlavorStability()
    yield Check(
        part,
        "flavor stability Re|1 + i·x|² at x = 3",
        stability(course.STABILITY_X),
        course.STABILITY,
    )
    yield Check(
        part,
        "its gradient (R → C → R)",
        jax.grad(stability)(course.STABILITY_X),
        course.STABILITY_GRAD,
    )


def part4() -> Iterator[Check]:
    part = "Part 4: Secret Family Recipes (custom derivative rules)"
    yeast = cj.YeastActivity()
    hot = course.YEAST_HOT
    yield Check(
        part,
        "yeast activity at 500, stable softplus",
        yeast(hot),
        hot,
        source="analytic",
        note=f"the course's log(1 + exp(x)) prints {course.YEAST_ACTIVITY_HOT} here",
    )
    yield Check(
        part, "its gradient at 500 (custom_jvp)", jax.grad(yeast)(hot), course.YEAST_GRAD_HOT
    )
    yield Check(
        part,
        "its second derivative at 500, finite",
        jax.grad(jax.grad(yeast))(hot),
        0.0,
        source="analytic",
    )
    x = cake()
    score = cj.Deliciousness()
    yield Check(
        part, "deliciousness gradient, unclipped", jax.grad(score)(x), course.DELICIOUSNESS_GRAD
    )
    clip = cj.GradientClip(course.BUTTER_CLIP, mask=BUTTER)
    yield Check(
        part,
        "gradient with the butter component clipped to ±0.1 (custom_vjp)",
        jax.grad(lambda v: score(clip(v)))(x),
        course.CLIPPED_GRAD,
    )
    reversal = cj.GradientReversal()
    yield Check(
        part,
        "the same gradient through GradientReversal: the course's, negated",
        jax.grad(lambda v: score(reversal(v)))(x),
        -np.asarray(course.DELICIOUSNESS_GRAD),
        source="course",
    )
    half = cj.GradientScale(0.5)
    yield Check(
        part,
        "through GradientScale(0.5), in forward mode (jacfwd): half the course's",
        jax.jacfwd(lambda v: score(half(v)))(x),
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
    yield Check(
        part,
        "final dough maturity, the fixed point of m ↦ a·m + b",
        dough_maturity(params),
        b / (1 - a),
        source="analytic",
    )
    yield Check(
        part,
        "its gradient w.r.t. (retention, boost), implicit function theorem",
        jax.grad(dough_maturity)(params),
        course.DOUGH_GRAD,
    )
    yield Check(
        part,
        "its Hessian: the course's custom_vjp version cannot compute this",
        jax.hessian(dough_maturity)(params),
        ((2 * b / (1 - a) ** 3, 1 / (1 - a) ** 2), (1 / (1 - a) ** 2, 0.0)),
        source="analytic",
    )
    yield Check(
        part,
        "forward mode (jvp along retention): impossible with the course's rule",
        jax.jvp(dough_maturity, (params,), (jnp.asarray([1.0, 0.0], x.dtype),))[1],
        b / (1 - a) ** 2,
        source="analytic",
    )
    yield Check(
        part,
        "scale-invariant: d(1e-7 · m*)/db, exact at any loss scale",
        jax.grad(lambda p: 1e-7 * dough_maturity(p))(params)[1],
        1e-7 / (1 - a),
        source="analytic",
    )
    repelling = (1.5, b)

    def repelling_maturity(p):
        return dough_maturity(p, solver=cj.Newton())

    yield Check(
        part,
        "a = 1.5 repels: Newton still finds m* = b / (1 - a)",
        repelling_maturity(jnp.asarray(repelling, dtype=x.dtype)),
        b / (1 - repelling[0]),
        source="analytic",
    )
    yield Check(
        part,
        "and its gradient (b / (1 - a)², 1 / (1 - a))",
        jax.grad(repelling_maturity)(jnp.asarray(repelling, dtype=x.dtype)),
        (b / (1 - repelling[0]) ** 2, 1 / (1 - repelling[0])),
        source="analytic",
    )
    yield Check(
        part,
        "a = -1 with Picard iteration oscillates: FixedPoint raises",
        _raises(lambda: dough_maturity((-1.0, b), solver=cj.Picard())),
        True,
        source="analytic",
    )
    yield Check(
        part,
        "a = 1, b = 0 (every m is fixed): the derivative raises, in jvp too",
        _raises(
            lambda: jax.jvp(
                dough_maturity,
                (jnp.asarray((1.0, 0.0), dtype=x.dtype),),
                (jnp.asarray((1.0, 0.0), dtype=x.dtype),),
            )
        ),
        True,
        source="analytic",
    )


def part5() -> Iterator[Check]:
    part = "The end of the story: the best cake (Hessian-vector products, trust region)"
    x = cake()
    score = cj.Deliciousness()
    best = cj.optimise_recipe(score, x)
    yield Check(
        part,
        "optimise_recipe from the course's cake: a better score, amounts >= 0",
        (bool(best.score > score(x)), bool(jnp.all(best.recipe >= 0))),
        (True, True),
        source="analytic",
        note=f"{float(score(x)):.4f} -> {float(best.score):.4f}, "
        f"recipe [{', '.join(f'{v:.5g}' for v in np.asarray(best.recipe))}]",
    )
    yield Check(
        part,
        "no flour: its cost's slope is infinite at 0, so the bound holds it",
        best.recipe[2],
        0.0,
        source="analytic",
    )

    def best_recipe(ideal):
        return cj.optimise_recipe(cj.Deliciousness(ideal_sweetness=ideal), x).recipe

    # The implicit function theorem by hand, densely: on the free amounts (flour is held at
    # 0), H_FF dx_F = -d(grad s)_F / d(ideal sweetness).
    x_best = best.recipe
    free = x_best > 0
    hessian = jax.hessian(score)(x_best)
    mixed = jax.jacfwd(lambda s: jax.grad(cj.Deliciousness(ideal_sweetness=s))(x_best))(
        jnp.asarray(10.0, x.dtype)
    )
    block = jnp.where(free[:, None] & free[None, :], hessian, jnp.eye(4, dtype=x.dtype))
    by_hand = jnp.linalg.solve(block, -jnp.where(free, mixed, 0))
    yield Check(
        part,
        "d(best recipe)/d(ideal sweetness) by implicit differentiation (GMRES on "
        "Hessian-vector products) = a dense solve with the Hessian",
        jax.jacfwd(best_recipe)(10.0),
        by_hand,
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
