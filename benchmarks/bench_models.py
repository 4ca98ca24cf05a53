"""Every course model and layer under every transform: steady-state time of the jitted
computation and XLA's deterministic cost metrics."""

import jax.numpy as jnp

from . import _common
from ._common import BACKENDS, compiled, put, run, warm
from ._problems import MODELS, transformed, UNSUPPORTED


TRANSFORMS = ("forward", "grad", "hessian", "hvp", "jacfwd", "jacrev")


class ModelTransforms(_common._CostTracks):
    """`jax.jit(transform(model))(x)`, model closed over; compile excluded, every output
    blocked on."""

    params = (list(MODELS), list(TRANSFORMS), list(BACKENDS))
    param_names = ("model", "transform", "backend")

    def setup(self, model, transform, backend):
        if (model, transform) in UNSUPPORTED:
            raise NotImplementedError(f"{model} does not support {transform}")
        f, point = MODELS[model]()
        self.fn = transformed(f, transform)
        self.args = (put(backend, jnp.asarray(point, dtype=float)),)
        self.params_key = (model, transform, backend)
        self.jitted = compiled(("models",) + self.params_key, lambda: warm(self.fn, *self.args))

    def time_steady_state(self, model, transform, backend):
        run(self.jitted, *self.args)
