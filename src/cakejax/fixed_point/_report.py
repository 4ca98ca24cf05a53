r"""Which examples of a vmapped batch failed: `eqx.error_if` raises one static message when any
element of a batched predicate is true, and cannot say how many or which. `failed_examples`
is the identity on a boolean, with a batching rule that sees the whole batch and, only when
some element is true, prints "k of B examples failed (indices ...)" to stderr just before
the error it guards is raised (a host callback inside a `cond`: nothing crosses to the host
when every example converged)."""

import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_batching import custom_vmap
from jaxtyping import Array, Bool


#: The most failed indices printed.
SHOWN = 10


def _print_failures(failed: Any) -> np.ndarray:
    failed = np.asarray(failed)
    indices = np.flatnonzero(failed.reshape(-1))
    more = " ..." if indices.size > SHOWN else ""
    print(
        f"FixedPoint: {indices.size} of {failed.size} examples failed under jax.vmap "
        f"(indices {indices[:SHOWN].tolist()}{more}); the error below is one of theirs.",
        file=sys.stderr,
    )
    return failed


@custom_vmap
def failed_examples(failed: Bool[Array, ""]) -> Bool[Array, ""]:
    """`failed`, unchanged; under `jax.vmap`, the failed examples are reported."""
    return failed


@failed_examples.def_vmap
def _failed_examples_vmap(axis_size, in_batched, failed):
    (batched,) = in_batched
    if batched:
        # A pure callback whose result is the output (so it is kept), as Equinox's own
        # errors are raised: an effectful `jax.debug.callback` in the program cost 0.16 ms a
        # call at N = 10^3, three times the solve.
        failed = jax.lax.cond(
            jnp.any(failed),
            lambda f: jax.pure_callback(
                _print_failures,
                jax.ShapeDtypeStruct(f.shape, f.dtype),
                f,
                vmap_method="sequential",
            ),
            lambda f: f,
            failed,
        )
    return failed, batched
