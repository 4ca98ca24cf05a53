"""Dimension aliases used across cakejax, and the switch for its runtime type checks.

Shapes are written with [jaxtyping](https://docs.kidger.site/jaxtyping/) and checked by
beartype through the import hook installed in `cakejax/__init__.py`. The checks run when a
function is called eagerly or traced (under `jax.jit` they run once, at trace time, and cost
nothing afterwards). Set `CAKEJAX_TYPECHECK=0` before importing cakejax to turn them off.
"""

import dataclasses
import functools
import os
import typing

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from beartype.door import is_bearable
from jaxtyping import Array, ArrayLike, Float, jaxtyped, TypeCheckError


def typecheck_enabled() -> bool:
    """Whether cakejax checks shapes and dtypes at run time (`CAKEJAX_TYPECHECK`, default on)."""
    return os.environ.get("CAKEJAX_TYPECHECK", "1") != "0"


def as_float_array(x):
    """Field converter: Python numbers (and lists of them) become arrays of JAX's default float
    dtype (float32, or float64 under `jax_enable_x64`); anything that already has a dtype keeps
    it, so that an integer or complex array reaches the type check and is rejected there."""
    if hasattr(x, "dtype"):
        return jnp.asarray(x)
    host = np.asarray(x)
    if host.dtype.kind in "iuf":
        return jnp.asarray(host, dtype=float)
    return jnp.asarray(host)


@functools.cache
def _field_annotations(cls: type) -> tuple[tuple[str, object], ...]:
    hints = typing.get_type_hints(cls, include_extras=True)
    return tuple((f.name, hints[f.name]) for f in dataclasses.fields(cls))


def _describe(value) -> str:
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"{value.dtype}{list(value.shape)}"
    return f"{type(value).__name__} {value!r}"


class TypedModule(eqx.Module):
    """An `eqx.Module` whose fields are checked against their jaxtyping annotations at
    construction (in `__check_init__`, after the converters have run), all fields sharing one
    set of dimension names. A wrong shape, rank or dtype raises `jaxtyping.TypeCheckError`
    naming the model, the field, the expected type and what was given."""

    def __check_init__(self):
        if not typecheck_enabled():
            return
        cls = type(self)
        with jaxtyped("context"):
            for name, annotation in _field_annotations(cls):
                value = getattr(self, name)
                if not is_bearable(value, annotation):
                    expected = getattr(annotation, "__name__", repr(annotation))
                    raise TypeCheckError(
                        f"{cls.__name__}: field '{name}' must be {expected}, "
                        f"got {_describe(value)}."
                    )


#: A real scalar given as an array.
Scalar = Float[Array, ""]
#: A real scalar given as anything array-like: `2.0`, `np.float32(2)`, a 0-d array.
ScalarLike = Float[ArrayLike, ""]
#: Amounts of the course's four ingredients, in the order of `cakejax.INGREDIENTS`: any
#: array-like (a JAX or NumPy array) of shape (4,).
Ingredients = Float[ArrayLike, "4"]
#: The course's three cake properties, in the order of `cakejax.PROPERTIES`.
Properties = Float[Array, "3"]
