"""The custom-derivative layers against what they replace or compete with."""

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

import cakejax as cj
from cakejax.examples import BUTTER, cake

from ._common import _Timed, BACKENDS, cost_tracks, GPU_SIZES, put, sized_for


class Softplus(_Timed):
    """`YeastActivity` vs `jax.nn.softplus` over n inputs, forward and gradient."""

    params = (["YeastActivity", "jax.nn.softplus"], [1000, 1000000, *GPU_SIZES],
              ["forward", "grad"], list(BACKENDS))
    param_names = ("impl", "n", "transform", "backend")

    @staticmethod
    def problem(impl, n, transform, backend):
        sized_for(backend, n)
        act = cj.YeastActivity() if impl == "YeastActivity" else jax.nn.softplus
        f = lambda x: jnp.sum(act(x))  # noqa: E731
        return (f if transform == "forward" else jax.grad(f),
                (put(backend, jnp.linspace(-20.0, 20.0, n)),))


class SoftplusCost(cost_tracks(Softplus)):
    """XLA's cost metrics of `Softplus`."""

    def setup_cache(self):
        return self.costs()



class MLP(_Timed):
    """The activation of `eqx.nn.MLP(1, 1, 32, 2)` (Equinox gives each neuron its own copy of
    an activation module: β of shape (2, 32)): `YeastActivity` against `jax.nn.softplus`,
    and `YeastActivity` with β frozen (`stop_gradient`: the same rule, no β to learn), over a
    batch of B inputs. The forward pass, and a training step as the Equinox docs write it
    (`eqx.filter_value_and_grad` of a mean squared error, optax adam,
    `eqx.apply_updates`)."""

    params = (["YeastActivity", "YeastActivity, beta frozen", "jax.nn.softplus"],
              [256, 4096], ["forward", "train step"], list(BACKENDS))
    param_names = ("impl", "batch", "transform", "backend")

    @staticmethod
    def problem(impl, batch, transform, backend):
        activation = {"YeastActivity": cj.YeastActivity(),
                      "YeastActivity, beta frozen": _FrozenYeast(cj.YeastActivity()),
                      "jax.nn.softplus": jax.nn.softplus}[impl]
        model = eqx.nn.MLP(1, 1, 32, 2, activation=activation, key=jax.random.key(0))
        params, static = eqx.partition(model, eqx.is_inexact_array)
        x = jnp.linspace(-3.0, 3.0, batch)[:, None]
        y = jnp.sin(x)
        if transform == "forward":
            def forward(params, x):
                return jax.vmap(eqx.combine(params, static))(x)

            return forward, put(backend, (params, x))
        optim = optax.adam(1e-3)

        def step(params, opt_state, x, y):
            def loss(p):
                return jnp.mean((jax.vmap(eqx.combine(p, static))(x) - y) ** 2)

            value, grads = jax.value_and_grad(loss)(params)
            updates, opt_state = optim.update(grads, opt_state, params)
            return eqx.apply_updates(params, updates), opt_state, value

        return step, put(backend, (params, optim.init(params), x, y))


class _FrozenYeast(eqx.Module):
    yeast: cj.YeastActivity

    def __call__(self, x):
        return jax.lax.stop_gradient(self.yeast)(x)


class Clip(_Timed):
    """Deliciousness with and without a `GradientClip` in front: the forward pass should not
    notice it."""

    params = (["with GradientClip", "without"], ["forward", "grad"], list(BACKENDS))
    param_names = ("impl", "transform", "backend")

    @staticmethod
    def problem(impl, transform, backend):
        score = cj.Deliciousness()
        clip = cj.GradientClip(0.1, mask=BUTTER)
        f = (lambda x: score(clip(x))) if impl == "with GradientClip" else (lambda x: score(x))
        return (f if transform == "forward" else jax.grad(f), (put(backend, cake()),))


class ClipCost(cost_tracks(Clip)):
    """XLA's cost metrics of `Clip`."""

    def setup_cache(self):
        return self.costs()

