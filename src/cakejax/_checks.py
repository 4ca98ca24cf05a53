"""Run-time checks of values (domain errors), cheap enough for batches of millions.

`eqx.error_if(x, pred, msg)` returns `x` through a `lax.cond`, and XLA materialises the
operand of a conditional: checking a batch of 10^6 cakes that way copies the whole batch (a
read and a write of every ingredient) before the model can use it, which is most of what a
batched Deliciousness call costs. `checked` puts only the (per-example) flag through
`eqx.error_if` and makes `x` depend on the checked flag with `x * where(flag, nan, 1)`, an
elementwise product that XLA fuses into whatever reads `x` next (given the columns of a batch
as separate leaves, as `CakeProperties` does, it fuses into each column's consumers and no
checked copy of the batch is ever stored). It is `x` exactly where the
flag is clear, and NaN where it is set, in the value and in every derivative (its derivative
is the same factor, so tangents and cotangents of a flagged example are NaN too: a `where`
would give them a silent zero). The flag is then a byte per
example, and the check costs one fused pass that reads `x` to compute it.

The data dependence is what keeps the check alive: every output, and every derivative of one,
is computed from the returned `x`, so the check cannot be removed as dead code under `jax.grad`
or `jax.jacrev` (a check attached to an output could be, where a derivative does not need that
output's value).

What a failing check does is Equinox's setting `EQX_ON_ERROR`, read when the model is traced:

- `raise` (Equinox's default): `eqx.EquinoxRuntimeError` with the message, eagerly and under
  `jax.jit`. The cost is the pass that computes the flag and a `lax.cond` on it; on a GPU a
  conditional's predicate is read by the host, so each call also waits for the device there.
- `nan`: NaN for the offending examples only (their values and derivatives). Here no
  `eqx.error_if` is needed at all: the product alone gives the NaNs, its predicate is
  computed inside the fusion that reads `x`, and the check costs nothing measurable (no
  extra pass, no conditional, no host sync). This is the setting for throughput.
- `breakpoint`: Equinox opens a debugger, as for `raise`.
"""

import os

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, PyTree


def checked(x: PyTree[Array], bad: Bool[Array, "..."], message: str) -> PyTree[Array]:
    """`x` (a PyTree of float arrays), unless `bad` is set anywhere: then an error with
    `message` (or, under `EQX_ON_ERROR=nan`, NaNs in place of `x` where `bad` is set; `bad`
    broadcasts against every leaf of `x`). See the module's docstring for how, and what it
    costs."""
    if os.environ.get("EQX_ON_ERROR", "raise") != "nan":
        bad = eqx.error_if(bad, bad, message)
    return jax.tree.map(
        lambda a: a * jnp.where(bad, jnp.asarray(jnp.nan, a.dtype), jnp.asarray(1, a.dtype)), x
    )
