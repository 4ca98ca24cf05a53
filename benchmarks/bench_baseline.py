"""cakejax's models against the course's plain functions, in the same run: steady state with
the model closed over and passed as a jit argument, compile time, jit dispatch, and the cost
of the type checks."""

import equinox as eqx
import jax

import cakejax as cj
from cakejax.examples import cake, like_data

from . import course_baseline as course
from ._common import BACKENDS, compile_fresh, compiled, put, run, Suite, warm


def _problem(problem: str, impl: str, backend: str):
    """(closed-over function of the data, (function of parameters and data, parameters),
    data) for one implementation."""
    if problem == "Deliciousness":
        x = put(backend, cake())
        if impl == "course":
            with_params = (lambda p, x: course.deliciousness_score(x), ())
            return course.deliciousness_score, with_params, (x,)
        model = put(backend, cj.Deliciousness())
        return (lambda x: model(x)), (lambda m, x: m(x), model), (x,)
    model, features, likes = (put(backend, a) for a in like_data())
    if impl == "course":
        params = (model.weights, model.bias)
        return ((lambda f, y: course.calculate_loss(*params, f, y)),
                (lambda p, f, y: course.calculate_loss(*p, f, y), params), (features, likes))
    return ((lambda f, y: cj.like_loss(model, f, y)),
            (lambda m, f, y: cj.like_loss(m, f, y), model), (features, likes))


class AgainstCourse(Suite):
    """The course's function vs the cakejax model computing the same thing."""

    params = (["Deliciousness", "LikeModel"], ["course", "cakejax"], list(BACKENDS))
    param_names = ("problem", "impl", "backend")

    def setup(self, problem, impl, backend):
        closed, (with_params, params), data = _problem(problem, impl, backend)
        key = (problem, impl, backend)
        self.closed = closed
        self.data = data
        self.params = params
        self.closed_jit = compiled(("closed",) + key, lambda: warm(closed, *data))
        self.argument_jit = compiled(("argument",) + key,
                                     lambda: warm(with_params, params, *data))
        self.grad_jit = compiled(("grad",) + key,
                                 lambda: warm(jax.grad(closed), *data))

    def time_closed_over(self, problem, impl, backend):
        run(self.closed_jit, *self.data)

    def time_as_jit_argument(self, problem, impl, backend):
        run(self.argument_jit, self.params, *self.data)

    def time_grad_closed_over(self, problem, impl, backend):
        run(self.grad_jit, *self.data)

    def time_compile(self, problem, impl, backend):
        self.last_compiled = compile_fresh(self.closed, *self.data)

    def program(self, method):
        if method == "time_as_jit_argument":
            return self.argument_jit, (self.params, *self.data)
        if method == "time_grad_closed_over":
            return self.grad_jit, self.data
        return self.closed_jit, self.data

    time_compile.number = 1
    time_compile.repeat = (3, 5, 5.0)


class Dispatch(Suite):
    """Calling a model passed as an argument through `jax.jit` or `eqx.filter_jit`."""

    params = (["jax.jit", "eqx.filter_jit"], list(BACKENDS))
    param_names = ("jit", "backend")

    def setup(self, jit, backend):
        self.model = put(backend, cj.Deliciousness())
        self.x = put(backend, cake())
        wrap = jax.jit if jit == "jax.jit" else eqx.filter_jit
        self.fn = compiled(("dispatch", jit, backend), lambda: wrap(lambda m, x: m(x)))
        run(self.fn, self.model, self.x)

    def time_call(self, jit, backend):
        run(self.fn, self.model, self.x)

    def program(self, method):
        return self.fn, (self.model, self.x)


class _ColdStart(Suite):
    """Import + trace + compile + first call of the course's Deliciousness gradient in a fresh
    process, with cakejax's type checks on and off (they run at trace time only). Timed by
    `bench_headline.Ratios`, the two interleaved, each run in a fresh interpreter."""

    params = (["on", "off"],)
    param_names = ("typecheck",)

    def timeraw_import_trace_compile_call(self, typecheck):
        return f"""
import os
os.environ["CAKEJAX_TYPECHECK"] = "{1 if typecheck == 'on' else 0}"
os.environ["JAX_PLATFORMS"] = "cpu"
import jax
import cakejax as cj
model = cj.Deliciousness()
x = cj.ingredients(butter=1.0, eggs=3.0, flour=2.0, sugar=1.5)
jax.block_until_ready(jax.jit(jax.grad(lambda x: model(x)))(x))
"""
