r"""What a failed forward solve says before its error is raised.

`eqx.error_if` raises one static message, chosen by a code: it cannot say which examples of
a vmapped batch failed, nor carry a number measured at run time. `report_failures` is the
identity on the boolean that guards the error, with a host callback that, only when some
example failed, prints to stderr just before the error is raised:

- under `jax.vmap`, "k of B examples failed (indices ...)" (its batching rule sees the whole
  batch);
- for a solve that ran out of steps, diverged or oscillated, the spectral radius $\rho$ of
  $\partial f/\partial x$ where it stopped (the first such example's, estimated by
  `growth_rate`), and what it means: from `EDGE` (0.95) the map is at or past the edge of
  contraction, which is how a deep-equilibrium model fails once training has made its layer
  expansive, and the message names the cure.

The radius is computed inside a `lax.cond` whose predicate is a single boolean (the whole
batch's "any failed", under `vmap`), so a solve that converges pays nothing at run time:
no Jacobian-vector product and no transfer to the host.
"""

import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_batching import custom_vmap
from jaxtyping import Array, Bool, Float, Int

from ._results import FixedPointResult


#: The most failed indices printed.
SHOWN = 10

#: Products of the radius reported, and those of them it averages over.
GROWTH_STEPS, GROWTH_AVERAGED = 64, 32

#: The outcomes where contraction is the question (not `rounding`, a scale problem).
_CONTRACTION_OUTCOMES = ("max_steps_reached", "diverged", "oscillating")

#: A radius from which the map counts as at the edge of contraction: measured at the iterate
#: where the solve stopped, not at a fixed point, it can sit a few percent below 1 when the
#: iterates circle a fixed point whose radius is above 1 (a trained layer: 0.988 there,
#: 1.016 at the fixed point). The guide's warning threshold for `cj.spectral_radius`.
EDGE = 0.95

#: The cure for a layer that stopped contracting, printed with a radius of at least `EDGE`.
CURE = (
    "If fn is a trained layer (a deep-equilibrium model), training has made it expansive: "
    "keep it contracting with cj.spectral_normalise on the weight that multiplies the state "
    "(guaranteed), or add cj.jacobian_penalty to the loss, and log cj.spectral_radius during "
    "training (the guide's 'Keeping it contracting')."
)


def _code(name: str) -> int:
    return int(jax.tree_util.tree_leaves(getattr(FixedPointResult, name))[0])


def _meaning(radius: float) -> str:
    if not np.isfinite(radius):
        return (
            "not finite: fn or its Jacobian is not finite there (are fn's parameters finite? "
            "a training step that applied a NaN gradient leaves NaN weights)."
        )
    if radius >= EDGE:
        return (
            f"{radius:.4g}: fn is at or past the edge of contraction there (at 1 or more it "
            "expands), where iterations stall, or circle a fixed point that repels. " + CURE
        )
    steps = np.log(1e-6) / np.log(max(radius, 1e-300))
    return (
        f"{radius:.4g}: fn contracts there, so lost contraction is not the likely cause; a "
        f"slow iteration (about {steps:.0f} plain steps per factor 1e-6: raise max_steps) or "
        "the solver's steps are (see the advice below)."
    )


def _print_failures(failed: Any, contraction: Any, example: Any, radius: Any) -> np.ndarray:
    """Host side: the line(s) before the error. `radius` is that of `example` (the first
    failed example with a contraction outcome), read only if there is one."""
    failed, contraction = np.asarray(failed), np.asarray(contraction)
    lines = []
    if failed.ndim:
        indices = np.flatnonzero(failed.reshape(-1))
        more = " ..." if indices.size > SHOWN else ""
        lines.append(
            f"FixedPoint: {indices.size} of {failed.size} examples failed under jax.vmap "
            f"(indices {indices[:SHOWN].tolist()}{more}); the error below is one of theirs."
        )
    if contraction.any():
        where = f" (example {int(example)})" if failed.ndim else ""
        lines.append(
            "FixedPoint: where the solve stopped, the spectral radius of dfn/dx "
            f"(estimated){where} is {_meaning(float(radius))}"
        )
    print("\n".join(lines), file=sys.stderr)
    return failed


def growth_rate(jvp: Callable[[Array], Array], start: Float[Array, " n"]) -> Float[Array, ""]:
    r"""The spectral radius $\rho(J)$ as the growth rate of $\|J^k v\|$ (Gelfand's formula on
    a vector): the mean of $\log(\|J v_k\| / \|v_k\|)$ over the last `GROWTH_AVERAGED` of
    `GROWTH_STEPS` products, exponentiated. Unlike power iteration's ratio it settles when the
    leading eigenvalues are a complex pair (the logs oscillate about $\log\rho$, and their
    mean converges), and it is one loop of one product: `cj.spectral_radius`'s Arnoldi
    (20 steps, then Gelfand on the Hessenberg matrix) is more accurate, but its loops
    doubled the compile time of a DEQ's train step for a line printed only on failure. An
    estimate within a few percent, for a message."""

    def step(k, carry):
        v, total = carry
        w = jvp(v)
        size = jnp.linalg.norm(w)
        total = total + jnp.where(k >= GROWTH_STEPS - GROWTH_AVERAGED, jnp.log(size), 0)
        # size 0: J is nilpotent on the start's Krylov space (radius 0, log -inf); NaN stays.
        return w / jnp.where(size == 0, 1, size), total

    v = start / jnp.linalg.norm(start)
    _, total = jax.lax.fori_loop(0, GROWTH_STEPS, step, (v, jnp.zeros((), start.dtype)))
    return jnp.exp(total / GROWTH_AVERAGED)


def report_failures(
    failed: Bool[Array, ""],
    code: Int[Array, ""],
    x: Float[Array, " n"],
    g: Callable[..., Float[Array, " n"]],
    params: tuple[Array, ...],
) -> Bool[Array, ""]:
    """`failed`, unchanged: when it is true (for some example, under `jax.vmap`), prints what
    is known of the failure just before the error it guards is raised. `code` is the
    forward solve's outcome, `x` its final iterate, `g(x, *params)` the map (flat, in the
    working dtype), with the arrays it depends on passed explicitly so that the batching
    rule knows which are batched."""

    def contraction_failed(failed, code):
        return failed & jnp.isin(
            code, jnp.asarray([_code(n) for n in _CONTRACTION_OUTCOMES], code.dtype)
        )

    def radius(x, params):
        _, jvp = jax.linearize(lambda v: g(v, *params), x)
        return growth_rate(jvp, jax.random.normal(jax.random.key(0), x.shape, x.dtype))

    def print_failures(failed, contraction, example, r):
        # A pure callback whose result is the output (so it is kept), as Equinox's own errors
        # are raised: an effectful `jax.debug.callback` in the program cost 0.16 ms a call
        # at N = 10^3, three times the solve.
        return jax.pure_callback(
            _print_failures,
            jax.ShapeDtypeStruct(failed.shape, failed.dtype),
            failed,
            contraction,
            example,
            r,
            vmap_method="sequential",
        )

    def report(failed, code, x, params, pick):
        """The report, for `failed` examples; `pick(i, a, batched)` is example i of `a`."""
        contraction = contraction_failed(failed, code)
        # One example's radius (the first failed one whose outcome is about contraction):
        # computed for the whole batch it cost compile time and work for a single line.
        example = jnp.argmax(contraction.reshape(-1))
        r = jax.lax.cond(
            jnp.any(contraction),
            lambda: radius(
                pick(example, x, 0), tuple(pick(example, p, i + 1) for i, p in enumerate(params))
            ),
            lambda: jnp.zeros((), x.dtype),
        )
        return print_failures(failed, contraction, example, r)

    @custom_vmap
    def identity(failed, code, x, *params):
        return jax.lax.cond(
            failed,
            lambda: report(failed, code, x, params, lambda i, a, _: a),
            lambda: failed,
        )

    @identity.def_vmap
    def _batched(axis_size, in_batched, failed, code, x, *params):
        failed = failed if in_batched[0] else jnp.broadcast_to(failed, (axis_size,))
        code = code if in_batched[1] else jnp.broadcast_to(code, (axis_size,))

        def pick(i, a, position):  # example i of the operand at `position` (after `code`)
            return a[i] if in_batched[position + 2] else a

        out = jax.lax.cond(
            jnp.any(failed),
            lambda: report(failed, code, x, params, pick),
            lambda: failed,
        )
        return out, True

    return identity(failed, code, x, *params)
