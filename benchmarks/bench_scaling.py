"""Where cost grows with size: Hessians vs Hessian-vector products, hvp vs grad, and
per-example gradients, on the like model scaled to d features."""

import jax
import jax.numpy as jnp

import cakejax as cj
from cakejax.examples import cake, like_problem

from ._common import _Timed, BACKENDS, compiled, cost_tracks, put, run, Suite, warm


class _LikeScaling(_Timed):
    """A scaled like-model suite: `function(method, loss)` is what is timed at the weights."""

    param_names = ("method", "d", "backend")

    @classmethod
    def problem(cls, method, d, backend):
        loss, w = compiled(("like-problem", d), lambda: like_problem(d))
        return cls.function(method, loss), (put(backend, w),)


class Hessian(_LikeScaling):
    """The full d×d Hessian: `jax.hessian` vs `vmap(hvp)` over the basis."""

    params = (["jax.hessian", "vmap(hvp)"], [16, 128, 1024], list(BACKENDS))

    @staticmethod
    def function(method, loss):
        if method == "jax.hessian":
            return jax.hessian(loss)
        return lambda w: jax.vmap(lambda v: cj.hvp(loss, w, v))(jnp.eye(w.shape[0], dtype=w.dtype))


class HvpVsGrad(_LikeScaling):
    """One Hessian-vector product against one gradient: hvp should cost a small constant
    multiple of grad, whatever d."""

    params = (["grad", "hvp"], [16, 256, 4096], list(BACKENDS))

    @staticmethod
    def function(method, loss):
        if method == "grad":
            return jax.grad(loss)
        return lambda w: cj.hvp(loss, w, jnp.ones_like(w))


class HessianCost(cost_tracks(Hessian)):
    """XLA's cost metrics of `Hessian`."""

    def setup_cache(self):
        return self.costs()



class HvpVsGradCost(cost_tracks(HvpVsGrad)):
    """XLA's cost metrics of `HvpVsGrad`."""

    def setup_cache(self):
        return self.costs()



class PerExample(Suite):
    """Per-customer gradients of the sweetness error: one `vmap(grad)` vs a Python loop of
    jitted gradients."""

    params = (["vmap", "loop"], [16, 256], list(BACKENDS))
    param_names = ("method", "batch", "backend")

    def setup(self, method, batch, backend):
        error = cj.SweetnessError()
        self.x = put(backend, cake())
        self.targets = put(backend, jnp.linspace(9.0, 11.0, batch))
        key = ("per-example", method, batch, backend)
        if method == "vmap":
            self.fn = compiled(key, lambda: warm(
                lambda x, t: cj.per_example_grad(error, x, t), self.x, self.targets))
        else:
            self.grad = compiled(key, lambda: warm(jax.grad(error), self.x, self.targets[0]))
            self.rows = list(self.targets)

    def time_gradients(self, method, batch, backend):
        if method == "vmap":
            run(self.fn, self.x, self.targets)
        else:
            jax.block_until_ready([self.grad(self.x, t) for t in self.rows])

    def program(self, method):
        # The loop runs one small program per customer: no single program to cost.
        return (self.fn, (self.x, self.targets)) if hasattr(self, "fn") else None
