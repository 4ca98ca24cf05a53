r"""`FixedPoint`: implicit fixed points $x^\star = f_\theta(x^\star)$ as a layer."""

import weakref
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.core  # for jax.core.Tracer (named, so that type checkers see it)
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PyTree

from .._arguments import count, tolerance
from .._autodiff import close_over_tracers
from .._programs import bounded_jit
from .._spectral_radius import spectral_radius as estimate_radius
from .._typing import describe, describe_tree, static_float
from ._adjoint import AbstractAdjoint, Implicit, nan_unless
from ._anderson import Anderson
from ._results import converged, FixedPointResult
from ._rule import Config, fixed_point, in_working, result_from_code, working, working_rtol
from ._solver import AbstractFixedPointSolver


class FixedPointSolution(eqx.Module):
    r"""The outcome of `FixedPoint.solve`.

    **Fields:**

    - `value`: the fixed point $x^\star$ (on failure with `throw=False`, the iterate of
      smallest residual; the layer's `__call__` returns NaN there).
    - `residual`: the true residual of `value`, $\max_i |f(x)_i - x_i|$.
    - `steps`: the forward solver's iterations (each one evaluation of `fn`; Newton's also
      linearise it and run GMRES).
    - `result`: a `FixedPointResult`.
    - `backward_steps`, `backward_residual`: when `solve` was given a `cotangent` $c$, the
      iterations of the reverse-mode system $(I - \partial f/\partial x)^\top u = c$ as the
      adjoint solves it (GMRES: restart cycles of `restart` products; Neumann: products;
      dense: 1, one LU solve; JacobianFree/Phantom: their terms), and its true relative residual
      $\|c - (I - J)^\top u\|_\infty / \|c\|_\infty$ (for an approximate adjoint, how far it
      is from the exact derivative); otherwise `None`.
    - `spectral_radius`: when `solve` was asked for it, `cj.spectral_radius` of
      $\partial f/\partial x$ at `value` (20 Arnoldi steps): the rate at which the iteration
      contracts there, and how far the layer is from losing its fixed point. Log it during
      training; from 0.95 (the threshold a failed solve's report uses) the layer is at the
      edge of contraction, where solves slow down and then fail: keep it down with
      `cj.spectral_normalise` or `cj.jacobian_penalty`. Otherwise `None`.

    **Property:** `converged`, whether `result` is `successful` or `floating_point_floor`
    (an array of them under `jax.vmap`).
    """

    value: PyTree[Float[Array, "..."]]
    residual: Float[Array, ""]
    steps: Int[Array, ""]
    result: FixedPointResult
    backward_steps: Int[Array, ""] | None = None
    backward_residual: Float[Array, ""] | None = None
    spectral_radius: Float[Array, ""] | None = None

    @property
    def converged(self) -> Bool[Array, "*batch"]:
        """Whether the solve converged (`successful` or `floating_point_floor`), per example
        under `jax.vmap`: `jnp.flatnonzero(~solutions.converged)` lists the failed ones."""
        return converged(self.result)


#: The instances whose fields were checked (by identity, held weakly: a module with arrays
#: has no hash), so that an eager loop over one `FixedPoint` checks it once, not per call.
_CHECKED: "weakref.WeakValueDictionary[int, FixedPoint]" = weakref.WeakValueDictionary()


@bounded_jit
def _compiled_fixed_point(fn, x0, config: Config):
    """The solve, compiled once per structure of `fn` and shapes of `x0`: called eagerly it is
    not retraced and recompiled on every call, and its errors arrive as
    `equinox.EquinoxRuntimeError`. Under an outer `jax.jit` it is inlined."""
    return fixed_point(fn, x0, config=config)


@bounded_jit
def _compiled_backward(fn, value, cotangent, config: Config):
    """The reverse-mode system at x*, as `config.adjoint` solves it in `jax.grad`."""
    flat_x, unravel = ravel_pytree(value)
    flat_c, _ = ravel_pytree(cotangent)
    dtype = flat_x.dtype
    _, vjp = jax.vjp(lambda x: ravel_pytree(fn(unravel(x)))[0], flat_x)
    # In the working precision, as the forward solve and the derivative rule (half-precision
    # states have no LAPACK).
    backward = config.adjoint.transpose(
        in_working(lambda u: vjp(u)[0], dtype),
        flat_c.astype(working(dtype)),
        rtol=working_rtol(config.rtol, dtype),
        max_steps=config.max_steps,
    )
    return backward.steps, backward.residual, backward.ok


class FixedPoint(eqx.Module):
    r"""The fixed point $x^\star = f_\theta(x^\star)$ of `fn` as a layer, differentiated by the
    implicit function theorem, never through the solver's loop.

    **Solving.** `solver` proposes iterates (`Anderson` by default, `Picard`, `Newton`); one
    shared loop decides when to stop, on the estimated *error*
    $\|f(x) - x\|/|1 - \mu| \le \text{atol} + \text{rtol}\cdot s$ ($\mu$ the slope of `fn`
    along the last step, $s = \max(\|x\|_\infty, \|f(x)\|_\infty)$ at the current iterate), so
    `rtol` is a relative accuracy of $x^\star$ whatever its units and wherever the solve
    started. A tolerance below what the dtype can give ends in `floating_point_floor`, which
    counts as converged; a residual that is small only through rounding (the map's own
    changes below its floating-point resolution, far out) ends in `rounding`, which does
    not. Every norm is NaN-safe ($\infty$ unless all elements are finite). bfloat16 and
    float16 states are solved in float32 and returned in their own dtype.

    **Derivatives** (`adjoint`): `Implicit()` (default, exact) solves
    $(I - \partial_x f)\,\dot x^\star = \partial_\theta f\,\dot\theta$ (a dense LU for states of
    up to 256 elements, matrix-free GMRES beyond), relative to the right-hand side, so
    gradients of losses of any scale are equally accurate; forward mode, reverse mode and
    Hessians all work, and past 256 elements no $n \times n$ matrix is ever formed.
    `JacobianFree()` and `Phantom(terms)` are opt-in *approximations* for training
    deep-equilibrium models. The derivative with respect to $x_0$ is zero.

    **Never silently wrong.** A solve that runs out of steps, diverges or oscillates, and a
    derivative at a non-isolated fixed point (singular $I - \partial_x f$, whatever the
    right-hand side), raise `equinox.EquinoxRuntimeError` by default (`eqx.error_if`, eagerly
    and under jit), with advice for the solver in use. Under `jax.vmap` the error is raised
    if any example fails, and a line printed just before the error says how many and which,
    and the spectral radius of $\partial_x f$ where the solve stopped (from 0.95, `fn` is at
    or past the edge of contraction there: in training, what the guide's "Keeping it
    contracting" cures).
    With `throw=False` nothing is raised: `solve` reports each example's `result` (so
    `solution.converged` marks the converged ones), while the layer's output and the
    derivatives of failed solves (each element, under vmap) are NaN, so that a training loss
    shows the failure.

    **Fields:**

    - `fn`: maps a state to a state of the same structure (a scalar, an array or a PyTree of
      floating arrays); its array fields are $\theta$. An Equinox module, `eqx.Partial`, or a
      function; a function closing over traced arrays is closure-converted so they are
      differentiated too.
    - `solver`: an `AbstractFixedPointSolver` (default `Anderson()`).
    - `adjoint`: an `AbstractAdjoint` (default `Implicit()`).
    - `rtol`, `atol`: the accuracy of $x^\star$ (defaults `1e-6` and `0`); `rtol` also sets the
      derivative's linear solve, relative to its right-hand side. Tighten `rtol` to `1e-12`
      in float64 for float64 accuracy.
    - `max_steps`: the most forward iterations (default 256); the derivative's linear solve
      has the same budget of products.
    - `throw`: raise on failure (default) or report it.
    """

    fn: Callable[..., Any]
    solver: AbstractFixedPointSolver = Anderson()
    adjoint: AbstractAdjoint = Implicit()
    rtol: float = eqx.field(default=1e-6, static=True, converter=static_float("FixedPoint", "rtol"))
    atol: float = eqx.field(default=0.0, static=True, converter=static_float("FixedPoint", "atol"))
    max_steps: int = eqx.field(default=256, static=True)
    throw: bool = eqx.field(default=True, static=True)

    def __check_init__(self):
        self.check()
        _CHECKED[id(self)] = self

    def check(self) -> None:
        """Raises `TypeError`/`ValueError` naming the field if one is invalid, the solver's and
        the adjoint's fields included. Runs at construction, and at `solve` on an instance
        that was not constructed (`eqx.tree_at`, a loaded checkpoint and every transform make
        new instances without `__init__`): once per instance, at trace time under jit."""
        rtol = tolerance("FixedPoint", "rtol", self.rtol)
        atol = tolerance("FixedPoint", "atol", self.atol)
        if rtol == 0 and atol == 0:
            raise ValueError("FixedPoint: rtol and atol cannot both be 0 (give rtol=1e-6, say).")
        count("FixedPoint", "max_steps", self.max_steps)
        if not isinstance(self.throw, bool | np.bool_):
            raise TypeError(f"FixedPoint: throw must be True or False, got {describe(self.throw)}.")
        if not callable(self.fn):
            raise TypeError(
                f"FixedPoint: field 'fn' must be callable (a function, an Equinox module or "
                f"eqx.Partial mapping the state to a state), got {describe(self.fn)}."
            )
        if not isinstance(self.solver, AbstractFixedPointSolver):
            raise TypeError(
                "FixedPoint: field 'solver' must be a cakejax solver (cj.Anderson(), "
                f"cj.Picard(), cj.Newton()), got {describe(self.solver)}."
            )
        if not isinstance(self.adjoint, AbstractAdjoint):
            raise TypeError(
                "FixedPoint: field 'adjoint' must be cj.Implicit(), cj.JacobianFree() or "
                f"cj.Phantom(), got {describe(self.adjoint)}."
            )
        self.solver.check()
        self.adjoint.check()

    def _config(self) -> Config:
        return Config(self.solver, self.adjoint, self.rtol, self.atol, self.max_steps, self.throw)

    def _check_state(self, x0) -> None:
        leaves = jax.tree_util.tree_leaves(x0)
        if not leaves or not all(jnp.issubdtype(jnp.result_type(a), jnp.floating) for a in leaves):
            raise TypeError(
                "FixedPoint: the state x0 must be a floating array or a PyTree of them, got "
                f"{jax.tree_util.tree_map(lambda a: jnp.result_type(a).name, x0)}."
            )
        shape_in = describe_tree(jax.eval_shape(lambda x: x, x0))
        shape_out = describe_tree(eqx.filter_eval_shape(self.fn, x0))
        if shape_in != shape_out:
            raise TypeError(
                "FixedPoint: fn must map the state to a state of the same structure, shapes "
                f"and dtypes; x0 is {shape_in} but fn(x0) is {shape_out}."
            )

    def solve(
        self,
        x0: PyTree[Float[ArrayLike, "..."]],
        cotangent: PyTree[Float[ArrayLike, "..."]] | None = None,
        *,
        spectral_radius: bool = False,
    ) -> FixedPointSolution:
        r"""Solves from `x0`; returns a `FixedPointSolution`.

        **Arguments:**

        - `x0`: the initial state: a floating array (JAX or NumPy), a Python float, or a
          PyTree of them.
        - `cotangent`: optional, a PyTree like the state. If given, the reverse-mode system
          $(I - \partial f/\partial x)^\top u = c$ at $x^\star$ is solved as `adjoint` would in
          `jax.grad`, and its iterations and residual are reported.
        - `spectral_radius`: if `True`, the solution carries the spectral radius of
          $\partial f/\partial x$ at the fixed point (20 Jacobian-vector products; see
          `FixedPointSolution`). Not differentiated.
        """
        if _CHECKED.get(id(self)) is not self:  # once per instance (see `_CHECKED`)
            self.check()
            _CHECKED[id(self)] = self
        x0 = jax.tree_util.tree_map(jnp.asarray, x0)
        self._check_state(x0)
        fn = close_over_tracers(self.fn, x0)
        value, residual, steps, code = _compiled_fixed_point(fn, x0, self._config())
        radius = None
        if spectral_radius:
            frozen = jax.lax.stop_gradient((eqx.filter(fn, eqx.is_array), value))
            radius = estimate_radius(eqx.combine(frozen[0], fn), frozen[1])
        solution = FixedPointSolution(
            value, residual, steps, result_from_code(code), spectral_radius=radius
        )
        if cotangent is None:
            return solution
        cotangent = jax.tree_util.tree_map(jnp.asarray, cotangent)
        if describe_tree(jax.eval_shape(lambda c: c, cotangent)) != describe_tree(value) or (
            jax.tree_util.tree_structure(cotangent) != jax.tree_util.tree_structure(value)
        ):
            raise TypeError(
                "FixedPoint.solve: cotangent must have the structure, shapes and dtypes of the "
                f"state {describe_tree(value)}, got {describe_tree(cotangent)}."
            )
        steps_back, residual_back, ok = _compiled_backward(fn, value, cotangent, self._config())
        result = FixedPointResult.where(
            converged(solution.result) & ~ok, FixedPointResult.singular, solution.result
        )
        if self.throw:
            residual_back = FixedPointResult.singular.error_if(residual_back, ~ok)
        return FixedPointSolution(value, residual, steps, result, steps_back, residual_back, radius)

    def __call__(self, x0: PyTree[Float[ArrayLike, "..."]]) -> PyTree[Float[Array, "..."]]:
        """**Arguments:** `x0`, the initial state. **Returns:** the fixed point $x^\\star$.

        With `throw=False`, a failed solve (each failed example, under `jax.vmap`) returns
        NaN, as its derivative does: a loss computed from it is NaN, which a training loop
        sees, where the iterate of smallest residual would give a finite loss that hides
        the failure (and, after an update with NaN gradients, a finite loss over NaN
        weights). `solve` returns that iterate, with its `result`."""
        solution = self.solve(x0)
        if self.throw:
            return solution.value
        ok = solution.converged
        return jax.tree_util.tree_map(lambda v: v * nan_unless(ok, v.dtype), solution.value)
