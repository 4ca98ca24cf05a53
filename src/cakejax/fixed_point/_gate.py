r"""A branch that stays a branch under `jax.vmap`."""

from collections.abc import Callable
from typing import TypeVar

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool


_T = TypeVar("_T")
_A = TypeVar("_A")


def gate(run: Bool[Array, ""], fn: Callable[[_A], _T], operand: _A, otherwise: _T) -> _T:
    """`fn(operand)` where `run`, else `otherwise` (a PyTree of arrays shaped as `fn`'s
    result).

    A `lax.cond` on a batched predicate becomes a `select` under `jax.vmap`: both branches are
    computed for every example. A `while_loop` of at most one trip instead runs its body only
    if some example needs it (and selects per example), so a fallback that most batches never
    need costs nothing. The operand enters the body scaled by the loop's own flag (1 there):
    work that depends only on values from outside the loop would be loop-invariant, and XLA
    hoists loop-invariant work out of the loop, to run whether or not the loop does.

    `fn` must be primal-only work: a while loop has no reverse-mode rule (the solves of
    `jax.lax.custom_linear_solve` and a certificate's `stop_gradient`-ed values qualify)."""

    def body(carry):
        flag, _ = carry
        variant = jax.tree_util.tree_map(lambda a: a * flag.astype(a.dtype), operand)
        return jnp.asarray(False), fn(variant)

    return jax.lax.while_loop(lambda carry: carry[0], body, (run, otherwise))[1]
