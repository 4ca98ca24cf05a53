"""The custom-derivative layers against what they replace or compete with."""

import jax
import jax.numpy as jnp

import cakejax as cj

from ._common import BACKENDS, cost_tracks, put
from ._common import _Timed
from ._problems import CAKE


class Softplus(_Timed):
    """`YeastActivity` vs `jax.nn.softplus` over n inputs, forward and gradient."""

    params = (["YeastActivity", "jax.nn.softplus"], [1000, 1000000], ["forward", "grad"],
              list(BACKENDS))
    param_names = ("impl", "n", "transform", "backend")

    @staticmethod
    def problem(impl, n, transform, backend):
        act = cj.YeastActivity() if impl == "YeastActivity" else jax.nn.softplus
        f = lambda x: jnp.sum(act(x))  # noqa: E731
        return (f if transform == "forward" else jax.grad(f),
                (put(backend, jnp.linspace(-20.0, 20.0, n)),))


class SoftplusCost(cost_tracks(Softplus)):
    """XLA's cost metrics of `Softplus`."""

    def setup_cache(self):
        return self.costs()



class Clip(_Timed):
    """Deliciousness with and without a `GradientClip` in front: the forward pass should not
    notice it."""

    params = (["with GradientClip", "without"], ["forward", "grad"], list(BACKENDS))
    param_names = ("impl", "transform", "backend")

    @staticmethod
    def problem(impl, transform, backend):
        score = cj.Deliciousness()
        clip = cj.GradientClip(0.1, mask=jnp.asarray([True, False, False, False]))
        f = (lambda x: score(clip(x))) if impl == "with GradientClip" else (lambda x: score(x))
        return (f if transform == "forward" else jax.grad(f), (put(backend, jnp.asarray(CAKE)),))


class ClipCost(cost_tracks(Clip)):
    """XLA's cost metrics of `Clip`."""

    def setup_cache(self):
        return self.costs()

