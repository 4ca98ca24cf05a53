"""Every course model against the course's hand-written function, at the batch sizes users run:
value, gradient and Hessian of one cake's score, `jax.vmap`-ed over N cakes (N = 1 is the
plain single call), jitted, with the cakejax model closed over or passed as a jit argument,
and the domain checks on. The XLA cost metrics (flops, bytes, temporary bytes) of the same
programs at N = 10⁶ are in `BatchCost`, compiled once per problem."""

import itertools
import os
import typing

import equinox as eqx
import jax
import jax.numpy as jnp

import cakejax as cj
from cakejax.examples import BUTTER, dough_maturity
from cakejax.testing import transform as transform_by_name

from . import course_baseline as course
from ._common import (
    _Timed,
    BACKENDS,
    cost_tracks,
    device,
    GPU_SIZES,
    put,
    run,
    sized_for,
    Suite,
)
from .interleaved import measure


class Problem(typing.NamedTuple):
    """One model: `course(x, *data)` and `cakejax(model, x, *data)` are the same scalar function
    of one cake's input `x`; `sample(key, n)` draws (x, data) for n cakes (leading axis n).
    With `batched=False` the n cakes are inside the function (a loss over a batch) and `x` is
    the model's weights."""

    course: typing.Callable
    cakejax: typing.Callable
    model: typing.Callable
    sample: typing.Callable
    batched: bool = True
    hessian: bool = True


def _uniform(shape):
    """Amounts drawn uniformly in [0.5, 3]: inside every model's domain."""
    return lambda key, n: (jax.random.uniform(key, (n, *shape), minval=0.5, maxval=3.0), ())


def _with_targets(key, n):
    kx, kt = jax.random.split(key)
    x, _ = _uniform((4,))(kx, n)
    return x, (jax.random.uniform(kt, (n,), minval=9.0, maxval=11.0),)


def _features(key, n):
    kf, kl = jax.random.split(key)
    return (jnp.asarray([0.3, -0.2, 0.1]),
            (jax.random.normal(kf, (n, 3)), jax.random.bernoulli(kl, 0.5, (n,))))


def _complex(xy):
    return jax.lax.complex(xy[0], xy[1])


_LIKE_BIAS = 0.5

#: name -> a factory of its Problem (factories, so that importing the suite creates no arrays:
#: asv's forkserver forks a process per benchmark, safe only before JAX's backend starts).
PROBLEMS = {
    "Polynomial": lambda: Problem(course.cake_quality_simple, lambda m, x: m(x),
                                  cj.Polynomial.cake_quality, _uniform(())),
    "LikeModel": lambda: Problem(
        lambda w, f, y: course.calculate_loss(w, _LIKE_BIAS, f, y),
        lambda m, w, f, y: cj.like_loss(cj.LikeModel(w, m.bias), f, y),
        lambda: cj.LikeModel(jnp.zeros(3), _LIKE_BIAS), _features, batched=False),
    "Deliciousness": lambda: Problem(course.deliciousness_score, lambda m, x: m(x),
                                     cj.Deliciousness, _uniform((4,))),
    "FluffinessLoss": lambda: Problem(course.fluffiness_loss, lambda m, x: m(x),
                                      lambda: cj.FluffinessLoss(False), _uniform((4,))),
    "SweetnessError": lambda: Problem(course.sweetness_error, lambda m, x, t: m(x, t),
                                      cj.SweetnessError, _with_targets),
    "VibrationScore": lambda: Problem(lambda xy: course.score_from_vibration(_complex(xy)),
                                      lambda m, xy: m(_complex(xy)), cj.VibrationScore,
                                      _uniform((2,))),
    "FlavorStability": lambda: Problem(course.calculate_flavor_stability, lambda m, x: m(x),
                                       cj.FlavorStability, _uniform(())),
    "YeastActivity": lambda: Problem(course.yeast_activity, lambda m, x: m(x),
                                     cj.YeastActivity, _uniform(())),
    "GradientClip": lambda: Problem(
        course.score_with_butter_limit, lambda m, x: m[1](m[0](x)),
        lambda: (cj.GradientClip(0.1, mask=BUTTER), cj.Deliciousness()),
        _uniform((4,))),
    # Part 4: the dough's final maturity as a function of (retention, boost), by Picard
    # iteration in both (the course's loop; cakejax's default Anderson solver does more work per
    # step, for maps that need it). The course's custom_vjp has no forward mode, so no Hessian
    # to compare against.
    "FixedPoint": lambda: Problem(
        lambda p: course.find_final_dough_maturity((p[0], p[1]), 0.0),
        lambda m, p: m(p), lambda: _Dough(),
        lambda key, n: (jnp.stack([jax.random.uniform(key, (n,), minval=0.1, maxval=0.9),
                                   jnp.full((n,), 10.0)], axis=1), ()), hessian=False),
}


class _Dough(eqx.Module):
    """The final maturity b/(1-a) found by `cj.FixedPoint` from (a, b), starting at 0."""

    def __call__(self, p):
        return dough_maturity(p, solver=cj.Picard())


TRANSFORMS = ("value", "grad", "hessian")
SIZES = [1, 1000, 1000000, *GPU_SIZES]


def program(name: str, transform: str, n: int, impl: str, mode: str):
    """(function, arguments) of one benchmark: `transform` of the model's scalar function,
    vmapped over the n cakes when n > 1, with the cakejax model closed over (`mode="closed"`)
    or as the function's first argument (`"argument"`)."""
    problem = PROBLEMS[name]()
    if transform == "hessian" and not problem.hessian:
        raise NotImplementedError(f"{name}: the course's custom_vjp has no Hessian")
    x, data = problem.sample(jax.random.key(0), n)
    if problem.batched and n == 1:
        x, data = x[0], tuple(d[0] for d in data)
    in_axes = 0 if problem.batched and n > 1 else None
    model = problem.model()
    score = problem.course if impl == "course" else problem.cakejax

    def per_cake(m, x, *data):
        f = (lambda x: score(x, *data)) if impl == "course" else (lambda x: score(m, x, *data))
        return transform_by_name(transform, f)(x)

    batched = per_cake if in_axes is None else jax.vmap(
        per_cake, in_axes=(None,) + (in_axes,) * (1 + len(data)))
    if mode == "closed" or impl == "course":
        return (lambda x, *data: batched(model, x, *data)), (x, *data)
    return batched, (model, x, *data)


def _problem(model, transform, n, impl, mode, backend):
    """(function, arguments) of the program at one point of the grid, on `backend`."""
    if impl == "course" and mode == "argument":
        raise NotImplementedError("the course's functions take no parameters")
    sized_for(backend, n)
    if n > 1000000 and (mode == "argument" or transform == "hessian" or model == "FixedPoint"):
        raise NotImplementedError("N = 10⁸: value and gradient, closed over")
    # The suite's time budget: at N = 10³ no Hessians and no jit-argument variant, and
    # FixedPoint (a second per call at N = 10⁶) at N = 10⁶ only for its value.
    if n == 1000 and (mode == "argument" or transform == "hessian"):
        raise NotImplementedError("N = 10³: value and gradient, closed over")
    if model == "FixedPoint" and n == 1000000 and (mode == "argument" or transform == "grad"):
        raise NotImplementedError("FixedPoint at N = 10⁶: the value, closed over")
    fn, args = program(model, transform, n, impl, mode)
    return fn, put(backend, args)


class _Measured(Suite):
    """cakejax against the course at every point of the grid, in one process: each cakejax
    program (closed over, or with the model as a jit argument) timed interleaved with the
    course's program of the same model, transform and N (`interleaved.measure`: 7 samples a
    side, each of enough calls to last 20 ms), compile excluded, output blocked on. One
    process compiles each program once and starts JAX once (a process per program spent
    200 s of the suite's 15 minutes on that).

    `Batch` and `BatchRatio` read the one measurement: asv runs a `setup_cache` once per place
    it is written, and both inherit this one."""

    timeout = 1800
    shared_setup_cache = True

    def setup_cache(self):
        grid = dict(zip(self.param_names, self.params, strict=True))
        found = {}
        for backend in grid["backend"]:
            try:
                device(backend)
            except NotImplementedError:
                continue
            for model, transform, n in itertools.product(grid["model"], grid["transform"],
                                                         grid["n"]):
                try:
                    course_call = _call(model, transform, n, "course", "closed", backend)
                except NotImplementedError:
                    continue
                for mode in grid["mode"]:
                    try:
                        cakejax_call = _call(model, transform, n, "cakejax", mode, backend)
                    except NotImplementedError:
                        continue
                    found[model, transform, n, mode, backend] = measure(cakejax_call,
                                                                        course_call)
        return found

    setup_cache.timeout = 1800


class Batch(_Measured):
    """The median time of a call of each program of the grid (compile excluded, output
    blocked on; `_Measured`), the course's from its pairing with the closed-over cakejax
    program."""

    params = (list(PROBLEMS), list(TRANSFORMS), SIZES, ["cakejax", "course"],
              ["closed", "argument"], list(BACKENDS))
    param_names = ("model", "transform", "n", "impl", "mode", "backend")
    problem = staticmethod(_problem)

    def setup(self, found, model, transform, n, impl, mode, backend):
        if (model, transform, n, mode, backend) not in found or (
            impl == "course" and mode != "closed"
        ):
            raise NotImplementedError(f"not measured here: {impl} {mode}")

    def track_seconds(self, found, model, transform, n, impl, mode, backend):
        return found[model, transform, n, mode, backend].seconds[impl == "course"]

    track_seconds.unit = "seconds"


class BatchRatio(_Measured):
    """The ratio cakejax / course of each cakejax program of the grid to the course's
    (`_Measured`): the median of the interleaved pairs, and their quartiles."""

    params = (list(PROBLEMS), list(TRANSFORMS), SIZES, ["closed", "argument"],
              list(BACKENDS))
    param_names = ("model", "transform", "n", "mode", "backend")

    def setup(self, found, *params):
        if params not in found:
            raise NotImplementedError(f"not measured here: {params}")

    def track_ratio(self, found, *params):
        return found[params].median

    def track_ratio_q1(self, found, *params):
        return found[params].low

    def track_ratio_q3(self, found, *params):
        return found[params].high

    track_ratio.unit = "ratio"
    track_ratio_q1.unit = "ratio"
    track_ratio_q3.unit = "ratio"


def _call(*params):
    """A function of no arguments: one call of `Batch`'s program at `params`, jitted (compiled
    by its first call), blocked on."""
    fn, args = _problem(*params)
    jitted = jax.jit(fn)
    return lambda: run(jitted, *args)


class _BatchProgram(_Timed):
    """One program of `Batch`'s grid on its own, for `interleaved.Programs`: the headline rows
    at N = 10⁶ measure it beside the rest of the headline. Underscored: not an asv benchmark
    (`Batch` times the grid)."""

    param_names = Batch.param_names
    problem = staticmethod(_problem)


class BatchCost(cost_tracks(Batch)):
    """XLA's flops, bytes accessed and temporary bytes of the `Batch` programs at N = 10⁶."""

    params = (list(PROBLEMS), list(TRANSFORMS), [1000000], ["cakejax", "course"], ["closed"],
              list(BACKENDS))

    def setup_cache(self):
        return self.costs()

    setup_cache.timeout = 600


class _DomainCheck(_Timed):
    """What the domain check costs: Deliciousness at N = 10⁶ with Equinox's `EQX_ON_ERROR` set
    to `raise` (the default: an error on a bad cake) or `nan` (NaNs for bad cakes, no check),
    against the course's unchecked function. cakejax reads the setting when a model is traced,
    so each program is traced with it set. Timed by `bench_headline.Ratios`, interleaved in
    one process."""

    params = (["raise", "nan", "course"], ["value", "grad"], list(BACKENDS))
    param_names = ("on_error", "transform", "backend")

    @staticmethod
    def problem(on_error, transform, backend):
        impl = "course" if on_error == "course" else "cakejax"
        return Batch.problem("Deliciousness", transform, 1000000, impl, "closed", backend)

    def setup(self, on_error, transform, backend):
        before = os.environ.get("EQX_ON_ERROR")
        os.environ["EQX_ON_ERROR"] = "raise" if on_error == "course" else on_error
        try:
            super().setup(on_error, transform, backend)
        finally:
            if before is None:
                del os.environ["EQX_ON_ERROR"]
            else:
                os.environ["EQX_ON_ERROR"] = before
