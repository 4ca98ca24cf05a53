"""The custom-derivative layers against what they replace or compete with."""

import jax
import jax.numpy as jnp
import lineax as lx
import optimistix as optx

import cakejax as cj

from . import course_baseline as course
from . import _common
from ._common import BACKENDS, Suite, compile_fresh, compiled, put, run, warm
from ._problems import CAKE, tanh_contraction, TanhCell


class Softplus(_common._CostTracks):
    """`YeastActivity` vs `jax.nn.softplus` over n inputs, forward and gradient."""

    params = (["YeastActivity", "jax.nn.softplus"], [1000, 1000000], ["forward", "grad"],
              list(BACKENDS))
    param_names = ("impl", "n", "transform", "backend")

    def setup(self, impl, n, transform, backend):
        act = cj.YeastActivity() if impl == "YeastActivity" else jax.nn.softplus
        f = lambda x: jnp.sum(act(x))  # noqa: E731
        self.fn = f if transform == "forward" else jax.grad(f)
        self.args = (put(backend, jnp.linspace(-20.0, 20.0, n)),)
        self.params_key = (impl, n, transform, backend)
        self.jitted = compiled(("softplus",) + self.params_key, lambda: warm(self.fn, *self.args))

    def time_steady_state(self, impl, n, transform, backend):
        run(self.jitted, *self.args)


class Clip(_common._CostTracks):
    """Deliciousness with and without a `GradientClip` in front: the forward pass should not
    notice it."""

    params = (["with GradientClip", "without"], ["forward", "grad"], list(BACKENDS))
    param_names = ("impl", "transform", "backend")

    def setup(self, impl, transform, backend):
        score = cj.Deliciousness()
        clip = cj.GradientClip(0.1, mask=jnp.asarray([True, False, False, False]))
        f = (lambda x: score(clip(x))) if impl == "with GradientClip" else (lambda x: score(x))
        self.fn = f if transform == "forward" else jax.grad(f)
        self.args = (put(backend, jnp.asarray(CAKE)),)
        self.params_key = (impl, transform, backend)
        self.jitted = compiled(("clip",) + self.params_key, lambda: warm(self.fn, *self.args))

    def time_steady_state(self, impl, transform, backend):
        run(self.jitted, *self.args)


UNROLLED_STEPS = 48  # enough for ‖W‖ = 0.5 to reach float32 precision


def fixed_point_loss(method: str, n: int):
    """The loss sum(x*²) of the fixed point of x ↦ tanh(W x + U θ), as a function of θ, by
    one of the methods compared."""
    W, U, theta = tanh_contraction(n)
    x0 = jnp.zeros(n)

    def cell(t):
        return TanhCell(W, U, t)

    if method == "cakejax":
        def solve(t):
            return cj.FixedPoint(cell(t))(x0)
    elif method == "unrolled":
        def solve(t):
            step = cell(t)
            return jax.lax.fori_loop(0, UNROLLED_STEPS, lambda _, x: step(x), x0)
    else:
        linear_solver = lx.GMRES(rtol=1e-6, atol=1e-6) if method == "optimistix+GMRES" else (
            lx.AutoLinearSolver(well_posed=None))

        def solve(t):
            step = cell(t)
            sol = optx.fixed_point(lambda x, _: step(x), optx.FixedPointIteration(1e-6, 1e-6),
                                   x0, adjoint=optx.ImplicitAdjoint(linear_solver))
            return sol.value

    return (lambda t: jnp.sum(solve(t) ** 2)), theta


FIXED_POINT_METHODS = ["cakejax", "unrolled", "optimistix", "optimistix+GMRES"]


class FixedPointGradient(_common._CostTracks):
    """Gradient of a loss through the fixed point x* = tanh(W x* + U θ), ‖W‖₂ = 0.5:
    cakejax's implicit rule vs differentiating an unrolled loop vs optimistix's ImplicitAdjoint
    (default: dense Jacobian and LU) vs optimistix with lineax's GMRES."""

    params = (FIXED_POINT_METHODS, [10, 100, 1000], list(BACKENDS))
    param_names = ("method", "n", "backend")

    def setup(self, method, n, backend):
        # Built once per process: W's normalisation is an SVD, which must not leak into samples.
        loss, theta = compiled(("fp-problem", method, n), lambda: fixed_point_loss(method, n))
        self.fn = jax.grad(loss)
        self.args = (put(backend, theta),)
        self.params_key = (method, n, backend)
        self.jitted = compiled(("fp",) + self.params_key, lambda: warm(self.fn, *self.args))

    def time_grad(self, method, n, backend):
        run(self.jitted, *self.args)

    def time_compile_grad(self, method, n, backend):
        compile_fresh(self.fn, *self.args)

    time_compile_grad.number = 1
    time_compile_grad.repeat = (3, 5, 20.0)


class DoughMaturity(Suite):
    """The course's scalar fixed point: cakejax's implicit gradient vs the course's unrolled
    alternative (differentiating 64 steps of the loop)."""

    params = (["cakejax", "unrolled"], list(BACKENDS))
    param_names = ("method", "backend")

    def setup(self, method, backend):
        if method == "cakejax":
            def f(p):
                return cj.FixedPoint(cj.DoughMaturity(p[0], p[1]))(0.0)
        else:
            def f(p):
                return course.find_final_dough_maturity_unrolled((p[0], p[1]), 0.0, 64)
        self.args = (put(backend, jnp.asarray([0.75, 10.0])),)
        self.jitted = compiled(("dough", method, backend), lambda: warm(jax.grad(f), *self.args))

    def time_grad(self, method, backend):
        run(self.jitted, *self.args)
