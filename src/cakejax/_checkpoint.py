r"""Checkpoints that remember what `eqx.tree_serialise_leaves` leaves out.

`eqx.tree_serialise_leaves(path, model)` writes a model's array (and Python number) leaves;
`eqx.tree_deserialise_leaves(path, like)` reads them into a template `like`. Everything else
comes from the template: static fields (`GradientClip`'s `bound`, `mask` and `mode`, the
solver's and adjoint's settings of a `FixedPoint`, `Anderson(history=...)`) and functions
(`FixedPoint.fn`, `StraightThrough.fn`). Loading into a template built with another mask or
solver therefore gives a model that is silently not the one saved.

`save_checkpoint(path, model)` writes, before Equinox's leaves, a *fingerprint* of the model:
every static field and non-array leaf by its path (`.layers[1].mask`) and a description of
its value (numbers and strings by value, masks and other arrays held statically by the SHA-256
of their bytes, functions by module and qualified name, modules field by field), and every
array leaf's dtype and shape. `load_checkpoint(path, like)` compares it with the template's
fingerprint first and raises `ValueError` naming each field that differs (saved value, the
template's value) before reading any leaf. Functions are compared by name only: a `lambda`
rebuilt with other constants inside is not told apart (pass the constants as arrays, as in
`eqx.Partial(f, c=...)`, and they are saved).

The file is a line `cakejax-checkpoint 1`, a line of JSON (the fingerprint), then exactly
what `eqx.tree_serialise_leaves` writes.
"""

import dataclasses
import hashlib
import io
import json
import os
from typing import Any

import equinox as eqx
import jax
import jax.core  # for jax.core.Tracer (named, so that type checkers see it)
import numpy as np


_MAGIC = b"cakejax-checkpoint 1\n"


def _describe(value) -> str:
    """A description of a static value that is the same in any process for equal values."""
    if value is None or isinstance(value, bool | int | float | complex | str):
        return repr(value)
    if hasattr(value, "__array__") and not isinstance(value, jax.core.Tracer):
        array = np.asarray(value)
        digest = hashlib.sha256(array.tobytes()).hexdigest()[:16]
        return f"{type(value).__name__} {array.dtype}{list(array.shape)} sha256:{digest}"
    if callable(value) and hasattr(value, "__qualname__"):
        return f"function {getattr(value, '__module__', '?')}.{value.__qualname__}"
    if isinstance(value, tuple | list):
        return f"{type(value).__name__}({', '.join(_describe(v) for v in value)})"
    text = repr(value)
    return text if " at 0x" not in text else type(value).__name__


def fingerprint(model: Any) -> dict[str, str]:
    """`{path: description}` of every static field, non-array leaf and array leaf's type of
    `model` (see the module's docstring)."""
    out: dict[str, str] = {}

    def walk(node, path: str) -> None:
        if eqx.is_array(node):
            array = np.asarray(node) if isinstance(node, np.ndarray) else node
            out[path] = f"array {array.dtype}{list(array.shape)}"
        elif isinstance(node, eqx.Module):
            out[path] = f"module {type(node).__module__}.{type(node).__qualname__}"
            for field in dataclasses.fields(node):
                value = getattr(node, field.name, None)
                if field.metadata.get("static", False):
                    out[f"{path}.{field.name}"] = _describe(value)
                else:
                    walk(value, f"{path}.{field.name}")
        elif isinstance(node, list | tuple):
            out[path] = f"{type(node).__name__} of {len(node)}"
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")
        elif isinstance(node, dict):
            out[path] = f"dict of {sorted(map(str, node))}"
            for key in sorted(node, key=str):
                walk(node[key], f"{path}[{key!r}]")
        elif isinstance(node, bool | int | float | complex):
            out[path] = type(node).__name__  # a leaf that is saved: its value may differ
        else:
            out[path] = _describe(node)

    walk(model, "")
    return out


def save_checkpoint(path: str | os.PathLike | io.IOBase, model: Any) -> None:
    """Saves `model` (any PyTree: an Equinox model, optimiser state) to `path` (a file name or a
    binary file): its fingerprint, then its leaves as `eqx.tree_serialise_leaves` writes
    them. Read it back with `load_checkpoint`."""
    header = _MAGIC + json.dumps(fingerprint(model)).encode() + b"\n"
    if isinstance(path, str | os.PathLike):
        with open(path, "wb") as file:
            file.write(header)
            eqx.tree_serialise_leaves(file, model)
    else:
        path.write(header)
        eqx.tree_serialise_leaves(path, model)


def load_checkpoint(path: str | os.PathLike | io.IOBase, like: Any) -> Any:
    """The model saved by `save_checkpoint` at `path`, read into the template `like` (built as
    the saved model was: same static fields, functions, shapes and dtypes). Raises
    `ValueError` naming every field where `like` differs from what was saved, before any leaf
    is read (`eqx.tree_deserialise_leaves` alone would take them from `like` silently)."""
    if isinstance(path, str | os.PathLike):
        with open(path, "rb") as file:
            return _load(file, like, os.fspath(path))
    return _load(path, like, getattr(path, "name", "the file"))


def _load(file: io.IOBase, like: Any, name: str) -> Any:
    if file.readline() != _MAGIC:
        raise ValueError(
            f"load_checkpoint: {name} is not a cakejax checkpoint (written by "
            "cj.save_checkpoint); a file of eqx.tree_serialise_leaves alone is read with "
            "eqx.tree_deserialise_leaves, which does not check static fields."
        )
    saved = json.loads(file.readline())
    mine = fingerprint(like)
    differences = [
        f"  {path or '(the model)'}: saved {saved.get(path, '(absent)')}, template "
        f"{mine.get(path, '(absent)')}"
        for path in sorted(set(saved) | set(mine))
        if saved.get(path) != mine.get(path)
    ]
    if differences:
        raise ValueError(
            f"load_checkpoint: the template does not match the model saved in {name} "
            "(static fields, functions and shapes are not in the saved leaves, so they would "
            "be taken from the template silently); build the template as the model was "
            "built. Differences:\n" + "\n".join(differences)
        )
    return eqx.tree_deserialise_leaves(file, like)
