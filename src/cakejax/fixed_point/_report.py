r"""What a failed forward solve says before its error is raised.

`eqx.error_if` raises one static message, chosen by a code: it cannot say which examples of
a vmapped batch failed, nor carry a number measured at run time. `report_failures` is the
identity on the boolean that guards the error, with a host callback that, only when some
example failed, prints to stderr just before the error is raised:

- under `jax.vmap`, "k of B examples failed (indices ...)" (its batching rule sees the whole
  batch);
- for a solve that ran out of steps, diverged or oscillated, the spectral radius $\rho$ of
  $\partial f/\partial x$ where it stopped (`cj.spectral_radius`), and what it means: at
  $\rho \ge 1$ the map does not contract there, which is how a deep-equilibrium model fails
  once training has made its layer expansive, and the message names the cure.

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

from .._spectral_radius import spectral_radius
from ._results import FixedPointResult


#: The most failed indices printed.
SHOWN = 10

#: The outcomes where contraction is the question (not `rounding`, a scale problem).
_CONTRACTION_OUTCOMES = ("max_steps_reached", "diverged", "oscillating")

#: A radius from which the map counts as at the edge of contraction: measured at the iterate
#: where the solve stopped, not at a fixed point, it can sit a few percent below 1 when the
#: iterates circle a fixed point whose radius is above 1 (a trained layer: 0.988 there,
#: 1.016 at the fixed point). The guide's warning threshold for `cj.spectral_radius`.
EDGE = 0.95

#: The cure for a layer that stopped contracting, printed with a radius of at least 1.
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


def _print_failures(failed: Any, contraction: Any, radii: Any) -> np.ndarray:
    """Host side: the line(s) before the error. `radii` is NaN-free where it is read."""
    failed, contraction, radii = (np.asarray(a) for a in (failed, contraction, radii))
    lines = []
    if failed.ndim:
        indices = np.flatnonzero(failed.reshape(-1))
        more = " ..." if indices.size > SHOWN else ""
        lines.append(
            f"FixedPoint: {indices.size} of {failed.size} examples failed under jax.vmap "
            f"(indices {indices[:SHOWN].tolist()}{more}); the error below is one of theirs."
        )
    chosen = np.flatnonzero(contraction.reshape(-1))
    if chosen.size:
        values = radii.reshape(-1)[chosen]
        # The worst: a non-finite radius first, then the largest.
        worst = chosen[np.argmax(np.where(np.isfinite(values), values, np.inf))]
        where = f" (example {worst}, the largest of the failed ones)" if failed.ndim else ""
        lines.append(
            "FixedPoint: where the solve stopped, the spectral radius of dfn/dx "
            f"(cj.spectral_radius){where} is {_meaning(float(radii.reshape(-1)[worst]))}"
        )
    print("\n".join(lines), file=sys.stderr)
    return failed


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
        return spectral_radius(lambda v: g(v, *params), x)

    def print_failures(failed, contraction, radii):
        # A pure callback whose result is the output (so it is kept), as Equinox's own errors
        # are raised: an effectful `jax.debug.callback` in the program cost 0.16 ms a call
        # at N = 10^3, three times the solve.
        return jax.pure_callback(
            _print_failures,
            jax.ShapeDtypeStruct(failed.shape, failed.dtype),
            failed,
            contraction,
            radii,
            vmap_method="sequential",
        )

    @custom_vmap
    def identity(failed, code, x, *params):
        def report(operands):
            failed, code, x, params = operands
            contraction = contraction_failed(failed, code)
            r = jax.lax.cond(contraction, radius, lambda x, p: jnp.zeros((), x.dtype), x, params)
            return print_failures(failed, contraction, r)

        return jax.lax.cond(failed, report, lambda o: o[0], (failed, code, x, params))

    @identity.def_vmap
    def _batched(axis_size, in_batched, failed, code, x, *params):
        failed_b, code_b, x_b, *params_b = in_batched
        failed = failed if failed_b else jnp.broadcast_to(failed, (axis_size,))
        code = code if code_b else jnp.broadcast_to(code, (axis_size,))

        def radii(x, params):
            if not (x_b or any(params_b)):
                return jnp.broadcast_to(radius(x, params), (axis_size,))
            axes = (0 if x_b else None, tuple(0 if b else None for b in params_b))
            return jax.vmap(radius, in_axes=axes)(x, params)

        def report(operands):
            failed, code, x, params = operands
            contraction = contraction_failed(failed, code)
            r = jax.lax.cond(
                jnp.any(contraction),
                radii,
                lambda x, p: jnp.zeros((axis_size,), x.dtype),
                x,
                params,
            )
            return print_failures(failed, contraction, r)

        out = jax.lax.cond(jnp.any(failed), report, lambda o: o[0], (failed, code, x, params))
        return out, True

    return identity(failed, code, x, *params)
