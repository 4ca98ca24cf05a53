r"""The course's examples, each defined once: the tour, the transform table, the tests, the
benchmarks and the docs all read them from here.

**The course's inputs.** `cake()` (butter, eggs, flour, sugar = 1, 3, 2, 1.5), `BUTTER` (the
mask that clips the butter component only), `like_data()` (the four cakes the like model
scores), `dough_maturity(params)` (the fixed point of $m \mapsto a\,m + b$ from $m_0 = 0$).
The numbers the course printed are in `cakejax._course` (transcribed digit for digit).

**The catalogue.** `EXAMPLES` maps a name to an `Example`: how to build the callable and the
point the course evaluates it at, what the course printed there (where it printed a value),
and the transforms it refuses by design. `models()` and `layers()` select its two kinds: the
course's models, and the custom-derivative layers of the transform table
(`python -m cakejax transforms`).

**At users' scale.** `TanhCell` and `tanh_contraction(n, rho)` (a fixed-point map on $n$
states with a chosen contraction rate) and `like_problem(d)` (the like model on $d$ features)
are the problems the tests and the benchmarks take beyond the course's four ingredients.

Nothing else in `cakejax` imports this module: it sits above the models and layers, beside the
tour and the command line.
"""

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp

from . import _course as course
from ._arguments import count, tolerance
from .fixed_point import FixedPoint, Implicit, JacobianFree, Newton, Phantom, Picard
from .layers import (
    GradientClip,
    GradientReversal,
    GradientScale,
    StraightThrough,
    YeastActivity,
)
from .recipes import (
    CakeProperties,
    Deliciousness,
    DoughMaturity,
    FlavorStability,
    FluffinessLoss,
    INGREDIENTS,
    ingredients,
    like_loss,
    LikeModel,
    Polynomial,
    SmoothMagic,
    SweetnessError,
    TrickyMagic,
    VibrationScore,
)


def cake() -> jax.Array:
    """The course's cake, in `INGREDIENTS` order, in the default float precision."""
    return ingredients(**course.CAKE)


#: `GradientClip`'s mask that clips the butter component only (the course's Part 4).
BUTTER: tuple[bool, ...] = tuple(name == "butter" for name in INGREDIENTS)


def like_data() -> tuple[LikeModel, jax.Array, jax.Array]:
    """The course's like model (drawn from key 42) and its four cakes' features and likes."""
    model = LikeModel.init(jax.random.key(course.LIKE_SEED), len(course.LIKE_FEATURES[0]))
    return model, jnp.asarray(course.LIKE_FEATURES, dtype=float), jnp.asarray(course.LIKES)


def dough_maturity(params, x0: Any = course.DOUGH_INITIAL, **options) -> jax.Array:
    """The final dough maturity: `FixedPoint(DoughMaturity(a, b), **options)` from `x0`, with
    `params = (a, b)` (retention, boost); $b / (1 - a)$ where it exists."""
    return FixedPoint(DoughMaturity(params[0], params[1]), **options)(x0)


@dataclasses.dataclass(frozen=True)
class Example:
    """One example of the course.

    **Fields:**

    - `build`: `() -> (callable, inputs)`, built when called, so in the float precision then
      in force.
    - `kind`: `"model"` (the course's models) or `"layer"` (a custom-derivative layer, a row of
      the transform table).
    - `printed`: what the course printed for `callable(*inputs)`, or `None` where it printed
      no value there.
    - `refuses`: the transforms of `cakejax.testing.TRANSFORMS` it refuses by design, with a
      clear error (GradientClip's rule is reverse mode only).
    - `derivative`: for a layer whose derivative is by design not its value's (a gradient
      clip, a straight-through estimator), the function whose derivative it gives (within the
      clip's bound), for `cakejax.testing.check_layer(reference=...)`.
    """

    build: Callable[[], tuple[Callable[..., Any], tuple[Any, ...]]]
    kind: Literal["model", "layer"]
    printed: Any = None
    refuses: frozenset[str] = frozenset()
    derivative: Callable[[Any], Any] | None = None


def _on_cake(model: Callable[[], Any], *extra: Any):
    return lambda: (model(), (cake(), *extra))


def _dough(**options) -> tuple[Any, tuple[Any, ...]]:
    a, b = course.DOUGH_PARAMS
    return FixedPoint(DoughMaturity(a, b), **options), (course.DOUGH_INITIAL,)


_VECTOR = (0.3, -1.4, 2.6)

EXAMPLES: dict[str, Example] = {
    # The course's models, at the points the course evaluates them.
    "Polynomial.cake_quality()": Example(
        lambda: (Polynomial.cake_quality(), (course.POLY_X,)), "model"
    ),
    "CakeProperties": Example(_on_cake(CakeProperties), "model", printed=course.PROPERTIES_AT_CAKE),
    "Deliciousness": Example(_on_cake(Deliciousness), "model"),
    "FluffinessLoss": Example(_on_cake(lambda: FluffinessLoss(False)), "model"),
    "FluffinessLoss(stopped)": Example(_on_cake(lambda: FluffinessLoss(True)), "model"),
    "SweetnessError": Example(_on_cake(SweetnessError, course.TARGET_SWEETNESS[0]), "model"),
    "VibrationScore": Example(
        lambda: (VibrationScore(), (course.VIBRATION_Z,)), "model", printed=course.VIBRATION_SCORE
    ),
    "SmoothMagic": Example(
        lambda: (SmoothMagic(), (course.VIBRATION_Z,)), "model", printed=course.SMOOTH_MAGIC_VALUE
    ),
    "TrickyMagic": Example(lambda: (TrickyMagic(), (course.VIBRATION_Z,)), "model"),
    "FlavorStability": Example(
        lambda: (FlavorStability(), (course.STABILITY_X,)), "model", printed=course.STABILITY
    ),
    # The custom-derivative layers: the rows of the transform table. A FixedPoint is
    # differentiated with respect to its map's parameters (retention, boost) and its start.
    "YeastActivity": Example(
        lambda: (YeastActivity(2.0), (jnp.asarray([-1.0, 0.5, 2.0, course.YEAST_HOT]),)), "layer"
    ),
    "GradientClip": Example(
        lambda: (GradientClip(course.BUTTER_CLIP, mask=BUTTER), (cake(),)),
        "layer",
        refuses=frozenset({"jvp", "jacfwd"}),
        derivative=lambda x: x,
    ),
    "StraightThrough(jnp.round)": Example(
        lambda: (StraightThrough(jnp.round), (jnp.asarray(_VECTOR),)),
        "layer",
        derivative=lambda x: x,
    ),
    "GradientScale(0.5)": Example(
        lambda: (GradientScale(0.5), (jnp.asarray(_VECTOR),)), "layer", derivative=lambda x: 0.5 * x
    ),
    "GradientReversal()": Example(
        lambda: (GradientReversal(), (jnp.asarray(_VECTOR),)), "layer", derivative=lambda x: -x
    ),
    "FixedPoint": Example(_dough, "layer"),
    "FixedPoint, Picard": Example(lambda: _dough(solver=Picard()), "layer"),
    "FixedPoint, Newton (a repelling point)": Example(
        lambda: (FixedPoint(DoughMaturity(1.5, course.DOUGH_PARAMS[1]), solver=Newton()), (0.0,)),
        "layer",
    ),
    "FixedPoint, Implicit('neumann')": Example(
        lambda: _dough(adjoint=Implicit("neumann")), "layer"
    ),
    "FixedPoint, Implicit('dense')": Example(lambda: _dough(adjoint=Implicit("dense")), "layer"),
    "FixedPoint, JacobianFree (approximate)": Example(
        lambda: _dough(adjoint=JacobianFree()), "layer"
    ),
    "FixedPoint, Phantom (approximate)": Example(lambda: _dough(adjoint=Phantom()), "layer"),
}


def models() -> dict[str, Example]:
    """The course's models in `EXAMPLES`."""
    return {name: e for name, e in EXAMPLES.items() if e.kind == "model"}


def layers() -> dict[str, Example]:
    """The custom-derivative layers in `EXAMPLES`: the rows of the transform table."""
    return {name: e for name, e in EXAMPLES.items() if e.kind == "layer"}


# --- At users' scale ------------------------------------------------------------------------


class TanhCell(eqx.Module):
    r"""$x \mapsto \tanh(W x + U\theta)$: a contraction when $\|W\|_2 < 1$ (tanh is
    1-Lipschitz)."""

    W: jax.Array
    U: jax.Array
    theta: jax.Array

    def __call__(self, x):
        return jnp.tanh(self.W @ x + self.U @ self.theta)


def tanh_contraction(n: int, rho: float = 0.5) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""$(W, U, \theta)$ of a `TanhCell` on `n` states and $\theta$ of dimension 4, with
    $W = A + A^\top$ symmetric and scaled to spectral radius $\|W\|_2 = \rho$ (the
    contraction's rate near $x = 0$)."""
    n = count("tanh_contraction", "n", n)
    rho = tolerance("tanh_contraction", "rho", rho)
    kw, ku, kt = jax.random.split(jax.random.key(0), 3)
    a = jax.random.normal(kw, (n, n))
    w = a + a.T
    w = rho * w / jnp.max(jnp.abs(jnp.linalg.eigvalsh(w)))
    u = jax.random.normal(ku, (n, 4)) / jnp.sqrt(n)
    return jax.block_until_ready((w, u, jax.random.normal(kt, (4,))))


def like_problem(d: int, cakes: int = 256) -> tuple[Callable[[jax.Array], jax.Array], jax.Array]:
    """The like model scaled up: `cakes` cakes of `d` features. Returns the loss as a
    function of the weights, and weights to evaluate it at."""
    d = count("like_problem", "d", d)
    cakes = count("like_problem", "cakes", cakes)
    kf, kw = jax.random.split(jax.random.key(0))
    features = jax.random.normal(kf, (cakes, d)) / jnp.sqrt(d)
    likes = jax.random.bernoulli(kw, 0.5, (cakes,))

    def loss(w):
        return like_loss(LikeModel(w, 0.0), features, likes)

    jax.block_until_ready(features)
    return loss, jax.block_until_ready(jax.random.normal(kw, (d,)))
