"""Dimension aliases used across cakejax, the checks of models' fields, and the switch for
the runtime type checks of arguments.

Shapes are written with [jaxtyping](https://docs.kidger.site/jaxtyping/). Function arguments
are checked by beartype through the import hook installed in `cakejax/__init__.py`; set
`CAKEJAX_TYPECHECK=0` before importing cakejax to turn those off. Models' fields are checked
by `TypedModule` whatever that switch says: at construction and again each time the model is
called, since `eqx.tree_at`, an optimiser step or a loaded checkpoint can change a field after
construction. Every check runs when a function is called eagerly or traced (under `jax.jit`
once, at trace time, costing nothing afterwards).
"""

import dataclasses
import functools
import os
import re
import typing
from typing import Annotated

import equinox as eqx
import jax
import jax.core  # for jax.core.Tracer (named, so that type checkers see it)
import jax.numpy as jnp
import numpy as np
from beartype.door import is_bearable
from beartype.vale import Is
from jaxtyping import Array, ArrayLike, Float, jaxtyped, TypeCheckError


def typecheck_enabled() -> bool:
    """Whether cakejax checks shapes and dtypes at run time (`CAKEJAX_TYPECHECK`, default on)."""
    return os.environ.get("CAKEJAX_TYPECHECK", "1") != "0"


def as_float_array(x):
    """Field converter: Python numbers (and lists of them) become arrays of JAX's default float
    dtype (float32, or float64 under `jax_enable_x64`); anything that already has a dtype keeps
    it, so that an integer or complex array reaches the type check and is rejected there, and
    anything that is not numbers at all (a string) is left as it is for the same reason."""
    if hasattr(x, "dtype"):
        return jnp.asarray(x)
    try:
        host = np.asarray(x)
    except ValueError:  # a ragged list
        return x
    if host.dtype.kind in "iuf":
        return jnp.asarray(host, dtype=float)
    if host.dtype.kind in "bc":
        return jnp.asarray(host)
    return x


def as_float(x):
    """An argument as an array: of JAX's default float dtype if it holds integers (a Python
    `int`, which the argument types admit: `Polynomial.cake_quality()(2)`; an integer array only
    gets here with `CAKEJAX_TYPECHECK=0`), else of its own dtype."""
    x = jnp.asarray(x)
    return x.astype(float) if jnp.issubdtype(x.dtype, jnp.integer) else x


def static_float(model: str, field: str):
    """A converter for a static (hyperparameter) float field: a Python number or a concrete
    scalar becomes a `float`; anything else is a `TypeError` naming the model and field."""

    def convert(value) -> float:
        if isinstance(value, jax.core.Tracer):
            raise TypeError(
                f"{model}: field '{field}' is a static hyperparameter and must be a concrete "
                f"number, got a traced value ({describe(value)}, e.g. an argument of a jitted "
                f"function). Build the {model} outside the transformation, or pass the "
                f"number as a static argument."
            )
        if isinstance(value, str | bytes | bool) or (
            hasattr(value, "dtype")
            and (np.shape(value) != () or np.dtype(value.dtype).kind not in "iuf")
        ):
            raise TypeError(
                f"{model}: field '{field}' must be a real number, got {describe(value)}."
            )
        try:
            return float(value)
        except (TypeError, ValueError):
            raise TypeError(
                f"{model}: field '{field}' must be a real number, got {describe(value)}."
            ) from None

    return convert


@functools.cache
def _field_annotations(cls: type) -> tuple[tuple[str, typing.Any], ...]:
    # `Any`: each is a type hint of any form (a class, a union, a jaxtyping array type), as
    # `typing.get_type_hints` gives it and `is_bearable` takes it.
    hints = typing.get_type_hints(cls, include_extras=True)
    return tuple((f.name, hints[f.name]) for f in dataclasses.fields(cls))


def describe(value) -> str:
    """What a value is, for an error message: `float32[3]` for an array, else its type and
    repr."""
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"{value.dtype}{list(value.shape)}"
    return f"{type(value).__name__} {value!r}"


def arrays_of(tree, kind) -> bool:
    """Whether `tree` has a leaf and every leaf is an array of a dtype of `kind`
    (`jnp.floating`, `jnp.inexact`)."""
    leaves = jax.tree_util.tree_leaves(tree)
    return bool(leaves) and all(
        hasattr(a, "dtype") and jnp.issubdtype(a.dtype, kind) for a in leaves
    )


def describe_tree(tree) -> typing.Any:
    """`describe` of every leaf of a PyTree, in its structure (`{'a': 'float32[3]'}`)."""
    return jax.tree_util.tree_map(describe, tree)


def _expected(annotation) -> str:
    """An annotation as an error message shows it: `Float[Array, '4']`,
    `Literal['value', 'norm']`, `Mask | None` (no module paths)."""
    plain = hasattr(annotation, "dim_str") or isinstance(annotation, type)
    text = annotation.__name__ if plain else repr(annotation)
    return re.sub(r"\b(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*)", r"\1", text)


class TypedModule(eqx.Module):
    """An `eqx.Module` whose fields are checked against their jaxtyping annotations, all
    fields sharing one set of dimension names: at construction (in `__check_init__`, after the
    converters have run) and again by `check_fields`, which every model calls where it is
    called. A wrong shape, rank or dtype raises `jaxtyping.TypeCheckError` naming the model,
    the field, the expected type and what was given. These checks do not depend on
    `CAKEJAX_TYPECHECK`.

    A subclass checks its fields' values (a positive bound, say) in `_check_values`, which
    runs after the type checks, so it can rely on each field having its declared type."""

    def __check_init__(self):
        self.check_fields()
        self._check_values()

    def _check_values(self):
        pass

    def check_fields(self):
        """Raises `TypeCheckError` if a field does not have its declared type and shape.
        Free under `jax.jit` (it runs when the model is traced)."""
        cls = type(self)
        with jaxtyped("context"):
            for name, annotation in _field_annotations(cls):
                value = getattr(self, name)
                if isinstance(value, np.ndarray | np.generic) and value.dtype.kind in "biufc":
                    # NumPy leaves (finite differences, a checkpoint read back) are checked
                    # as the arrays they become.
                    value = jnp.asarray(value)
                if not is_bearable(value, annotation):
                    expected = _expected(annotation)
                    raise TypeCheckError(
                        f"{cls.__name__}: field '{name}' must be {expected}, got {describe(value)}."
                    )


#: A real scalar given as an array.
Scalar = Float[Array, ""]
#: A Python `int` (not a `bool`): where a real number is asked for, `2` means `2.0`.
PyInt = Annotated[int, Is[lambda x: type(x) is int]]
#: A real scalar given as anything array-like: `2.0`, `2`, `np.float32(2)`, a 0-d array (an
#: integer array is refused: convert it explicitly). Convert it with `as_float`.
ScalarLike = Float[ArrayLike, ""] | PyInt
#: Amounts of the course's four ingredients, in the order of `cakejax.INGREDIENTS`: any
#: array-like (a JAX or NumPy array) of shape (4,).
Ingredients = Float[ArrayLike, "4"]
#: The course's three cake properties, in the order of `cakejax.PROPERTIES`.
Properties = Float[Array, "3"]
