"""Compiled programs, a bounded number of them.

`eqx.filter_jit(f)` compiles one program per value of its arguments' non-array parts (a
function passed in, a configuration) and keeps every one for as long as `f` lives: for a
module-level `f`, forever. A user who writes `cj.FixedPoint(lambda x: 0.5 * x + 1)(x0)` in a
loop or a notebook cell passes a new function each time, so each call compiled and kept a
program: 4 MB a call for `FixedPoint`, 18 MB for `optimise_recipe`, until the process ran out
of memory (`jax.clear_caches()` released them, but nobody knows to call it).

`bounded_jit(f)` is `eqx.filter_jit(f)` with at most `PROGRAMS` argument structures held, least
recently used first out: one `eqx.filter_jit` per structure (the arguments' non-array parts,
which must be hashable, as for `eqx.filter_jit`), each compiling on its own; evicting one frees
its programs (Equinox's cache is keyed weakly by the function it compiles). A structure that
is used again is not recompiled, however many arrays of the same shapes it is called with.

To avoid recompiling at all, keep the function and pass what changes as arrays: an Equinox
module (`eqx.nn.MLP`, a `cj.DoughMaturity`) or `eqx.Partial(f, params)` is the same structure
for any values of its arrays, where a new `lambda` is a new structure each time.
"""

import collections
import functools
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax


#: How many argument structures (so, compiled programs) each compiled entry point keeps.
PROGRAMS = 16


class _Program:
    """One argument structure's compiled function: an `eqx.filter_jit` of a function of the
    arguments' array leaves alone, which finds the other leaves here. So the arguments that
    JAX's caches keep hold no user object (a closure over a large array, say), and `drop`
    releases them and the compiled executables."""

    def __init__(self, fn: Callable[..., Any], treedef, others: list[Any]):
        self.static: tuple[Any, list[Any]] | None = (treedef, others)

        def run(arrays):
            assert self.static is not None, "a dropped program is never called"
            treedef, others = self.static
            leaves = [o if a is None else a for o, a in zip(others, arrays, strict=True)]
            return fn(*jax.tree_util.tree_unflatten(treedef, leaves))

        run.__name__ = run.__qualname__ = getattr(fn, "__name__", type(fn).__name__)
        self.jitted = eqx.filter_jit(run)

    def drop(self) -> None:
        self.static = None
        # The `jax.jit` that Equinox wraps (`_cached`) would keep the executables alive (its
        # cache is reachable from Equinox's, keyed by `run`): cleared here.
        cached = getattr(self.jitted, "_cached", None)
        if cached is not None:
            cached.clear_cache()


class bounded_jit:
    """`eqx.filter_jit(fn)` keeping at most `PROGRAMS` compiled structures (see the module's
    docstring)."""

    def __init__(self, fn: Callable[..., Any]):
        self._fn = fn
        self._programs: collections.OrderedDict[Any, _Program] = collections.OrderedDict()
        functools.update_wrapper(self, fn, updated=())

    def __call__(self, *args):
        leaves, treedef = jax.tree_util.tree_flatten(args)
        arrays = [leaf if eqx.is_array(leaf) else None for leaf in leaves]
        others = [None if a is not None else o for o, a in zip(leaves, arrays, strict=True)]
        key = (treedef, *others)
        program = self._programs.pop(key, None)
        if program is None:
            program = _Program(self._fn, treedef, others)
        self._programs[key] = program
        if len(self._programs) > PROGRAMS:
            self._programs.popitem(last=False)[1].drop()
        return program.jitted(arrays)

    def __len__(self) -> int:
        """How many structures are held now."""
        return len(self._programs)
