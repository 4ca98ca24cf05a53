"""The custom-derivative layers against what they replace or compete with."""

import jax
import jax.numpy as jnp

import cakejax as cj

from . import _common
from ._common import BACKENDS, compiled, put, run, warm
from ._problems import CAKE


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
