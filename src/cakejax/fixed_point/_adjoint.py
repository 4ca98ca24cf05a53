r"""How `FixedPoint` differentiates: the exact implicit rule, and the approximate rules used to
train deep-equilibrium models cheaply.

Differentiating $x^\star = f_\theta(x^\star)$ gives $(I - J)\,\dot x^\star = \partial_\theta
f\,\dot\theta =: b$ with $J = \partial f/\partial x$ at $x^\star$. An adjoint turns $b$ into
$\dot x^\star$ with Jacobian-vector products only (`jvp`), linearly in $b$, so that JAX
transposes it for reverse mode (vector-Jacobian products) and differentiates it again for
Hessians. No $n \times n$ matrix is formed.
"""

import abc
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool

from .._arguments import Checked, count
from ._gate import gate
from ._linear import LinearSolve, solve_linear
from ._loop import norm
from ._results import FixedPointResult
from ._solver import Vector


Product = Callable[[Vector], Vector]
#: Where the Neumann series gives up, `Implicit()` factorises I - J densely up to this many
#: state elements and solves by GMRES beyond.
DENSE_AUTO = 256
#: `Implicit()` sums the Neumann series first and gives up on it (for its dense or GMRES
#: solve) once its terms shrink by less than this a step (over the last two steps).
NEUMANN_SLOWEST = 0.8
#: `Implicit("dense")` refuses states larger than this: a (B n)^2 Jacobian of a whole batch
#: as the state took 4.1 s a training step at 128 x 64.
DENSE_LIMIT = 4096


def nan_unless(ok: Array, dtype) -> Array:
    """1 where `ok`, NaN elsewhere: multiplying a tangent by it keeps it linear."""
    return jnp.where(ok, jnp.asarray(1, dtype), jnp.asarray(jnp.nan, dtype))


class AbstractAdjoint(Checked):
    """The derivative rule of `FixedPoint`. `approximate` says whether it is exact."""

    approximate: ClassVar[bool]

    @abc.abstractmethod
    def prepare(
        self, jvp: Product, x: Vector, *, rtol: float, max_steps: int
    ) -> tuple[Bool[Array, ""], Any]:
        """Runs with the primal computation (in the forward pass of reverse mode), once per
        linearisation: whether the derivative exists at $x^\\star$, independently of the
        right-hand side, and whatever `tangent` reuses (a factorisation)."""

    @abc.abstractmethod
    def tangent(
        self, prepared: Any, jvp: Product, b: Vector, *, rtol: float, max_steps: int, throw: bool
    ) -> Vector:
        """$\\dot x^\\star$ for the right-hand side $b$: linear and transposable in $b$."""

    @abc.abstractmethod
    def transpose(self, vjp: Product, c: Vector, *, rtol: float, max_steps: int) -> LinearSolve:
        """The reverse-mode system $(I - J)^\\top u = c$ as this rule solves it, with its
        statistics (for `FixedPoint.solve(x0, cotangent=c)`)."""


class Implicit(AbstractAdjoint):
    r"""The exact derivative: $\dot x^\star = (I - J)^{-1} b$ by the implicit function theorem,
    solved to the layer's `rtol` relative to $\|b\|$ (scale-invariant).

    **The certificate.** Before the first derivative it certifies that $I - J$ is
    nonsingular, once per linearisation, not per tangent (under `jacfwd` or `jax.hessian`
    every basis vector shares it): a non-isolated fixed point (where every nearby point may be
    a fixed point too) has no derivative, and a solve whose own right-hand side happens to lie
    in the range of a singular $I - J$ (e.g. zero) would otherwise return a number. Which
    certificate depends on the solver:

    - the Neumann series (`"auto"`, `"neumann"`) summed on a fixed pseudo-random right-hand side:
      it converges only if $\rho(J) < 1$ (the probe has a component along every eigenvector
      of $J$, with probability one), and then $I - J$ is nonsingular;
    - GMRES: the same probe solved to `rtol` (a singular $I - J$ leaves a residual);
    - dense: the LU factorisation itself, every pivot above $n\,\varepsilon$ times the
      largest (or than 1).

    **Arguments:**

    - `linear_solver`:
      - `"auto"` (default): the Neumann series first. The series $\sum_i J^i b$ costs one
        product a term and nothing else; it is summed while its terms shrink by at least
        `NEUMANN_SLOWEST` = 0.8 a step (under 62 terms to 1e-6), and the examples where they
        do not (a weak or no contraction, a repelling fixed point) are solved by the dense
        rule (up to `DENSE_AUTO` = 256 elements) or GMRES (beyond), which run only if some
        example needs them, even under `vmap`. A scalar state gets the dense rule (a
        division). Measured in the README's "How FixedPoint's defaults are chosen": a
        deep-equilibrium layer of 64 units over 128 examples trains 3.4x faster than with
        `"dense"`; n = 1000 at $\rho \ge 0.9$, where the series gives up after 4-6
        products, takes 1.04-1.17x GMRES alone's time.
      - `"gmres"`: any nonsingular $I - J$, repelling fixed points included, matrix-free.
      - `"neumann"`: the series alone, to convergence: only for $\rho(J) < 1$.
      - `"dense"`: $J$ formed from $n$ Jacobian-vector products and $I - J$ LU-factorised
        once, with the primal computation; every tangent or cotangent is then two triangular
        solves (a division for a scalar state). $O(n^2)$ memory and $O(n^3)$ work, so
        refused past `DENSE_LIMIT` = 4096 elements.
    - `restart`: GMRES's restart length (default 20).
    """

    approximate: ClassVar[bool] = False
    linear_solver: Literal["auto", "gmres", "neumann", "dense"] = eqx.field(
        default="auto", static=True
    )
    restart: int = eqx.field(default=20, static=True)

    def check(self):
        if self.linear_solver not in ("auto", "gmres", "neumann", "dense"):
            raise ValueError(
                "Implicit: linear_solver must be 'auto', 'gmres', 'neumann' or 'dense', got "
                f"{self.linear_solver!r}."
            )
        count("Implicit", "restart", self.restart)

    def method(self, n: int) -> Literal["gmres", "neumann", "dense"]:
        """The solver of a state of `n` elements after the series, if any: for `"auto"`,
        `"dense"` up to `DENSE_AUTO` elements, `"gmres"` beyond. `"dense"` past
        `DENSE_LIMIT` is refused."""
        if self.linear_solver == "auto":
            return "dense" if n <= DENSE_AUTO else "gmres"
        if self.linear_solver == "dense" and n > DENSE_LIMIT:
            raise ValueError(
                f"Implicit('dense'): the state has {n} elements, so the dense rule would form "
                f"a {n} x {n} Jacobian from {n} Jacobian-vector products and LU-factorise it "
                f"(more than DENSE_LIMIT = {DENSE_LIMIT} elements). If the state is a whole "
                "batch, jax.vmap the layer over the examples instead (each gets its own small "
                "solve); otherwise use Implicit() (GMRES at this size)."
            )
        return self.linear_solver

    def _series_first(self, n: int) -> bool:
        """Whether the Neumann series is tried first, with GMRES behind it."""
        return self.linear_solver == "auto" and n > 1

    def _solve(self, product: Product, b: Vector, rtol: float, max_steps: int) -> LinearSolve:
        method = self.method(b.shape[0])

        def direct(rhs):
            if method == "dense":
                return _dense_solve(product, rhs)
            return solve_linear(
                method,
                lambda t: t - product(t),
                rhs,
                rtol=rtol,
                max_steps=max_steps,
                restart=self.restart,
            )

        if not self._series_first(b.shape[0]):
            return direct(b)
        series = solve_linear(
            "neumann",
            lambda t: t - product(t),
            b,
            rtol=rtol,
            max_steps=max_steps,
            slowest=NEUMANN_SLOWEST,
        )
        return gate(~series.ok, direct, b, series)

    def prepare(self, jvp, x, *, rtol, max_steps):
        if not self._series_first(x.shape[0]) and self.method(x.shape[0]) == "dense":
            factors = _factorise(jvp, jnp.eye(x.shape[0], dtype=x.dtype))
            ok = _well_conditioned(factors)
            return ok, (factors, ok)
        probe = _probe_vector(x.shape[0], x.dtype)
        if not self._series_first(x.shape[0]):
            return self._solve(jvp, probe, rtol, max_steps).ok, None
        series = solve_linear(
            "neumann",
            lambda t: t - jvp(t),
            probe,
            rtol=rtol,
            max_steps=max_steps,
            slowest=NEUMANN_SLOWEST,
        )

        def direct(operands):
            rhs, eye = operands
            if self.method(x.shape[0]) == "dense":
                return _well_conditioned(_factorise(jvp, eye))
            return solve_linear(
                "gmres",
                lambda t: t - jvp(t),
                rhs,
                rtol=rtol,
                max_steps=max_steps,
                restart=self.restart,
            ).ok

        # Where the series gave up, the direct method's own certificate (run only if some
        # example needs it; the factors are not kept, see `tangent`).
        eye = jnp.eye(x.shape[0], dtype=x.dtype) if self.method(x.shape[0]) == "dense" else None
        certified = gate(~series.ok, direct, (probe, eye), series.ok)
        # Whether the series serves this linearisation (it converges for any right-hand
        # side where it converged on the probe: no giving up on the tangents).
        return certified, jax.lax.stop_gradient(series.ok)

    def tangent(self, prepared, jvp, b, *, rtol, max_steps, throw):
        method = self.method(b.shape[0])
        if method == "dense" and not self._series_first(b.shape[0]):
            factors, ok = prepared

            # Two triangular solves each way; the certificate is checked with the solve
            # itself, so that it survives when only the derivative is used (under jit).
            def dense(trans):
                def solve(_, rhs):
                    t = _lu_solve(factors, rhs, trans)
                    if throw:
                        return FixedPointResult.singular.error_if(t, ~ok)
                    return t

                return solve

            return jax.lax.custom_linear_solve(lambda t: t - jvp(t), b, dense(0), dense(1))

        def solver(trans):
            def solve(matvec, rhs):
                def direct(operands):
                    v, eye = operands
                    if method == "dense":
                        # Factorised here, where the series gave up, rather than once in
                        # `prepare`: factors carried out of a gate (a B x n x n array under
                        # vmap) cost a 64-unit DEQ's train step more than its whole backward
                        # pass when no example needs them (2.6 against 1.1 ms). Where one
                        # does, a right-hand side costs n products and an LU, as GMRES can.
                        factors = _factorise(jvp, eye)
                        return _lu_solve(factors, v, trans), _well_conditioned(factors)
                    solution = solve_linear(
                        method, matvec, v, rtol=rtol, max_steps=max_steps, restart=self.restart
                    )
                    return solution.value, solution.ok

                eye = jnp.eye(rhs.shape[0], dtype=rhs.dtype) if method == "dense" else None
                if self._series_first(b.shape[0]):
                    series = solve_linear(
                        "neumann", matvec, rhs, rtol=rtol, max_steps=max_steps, start=prepared
                    )
                    t, ok = gate(~prepared, direct, (rhs, eye), (series.value, series.ok))
                else:
                    t, ok = direct((rhs, eye))
                if throw:
                    return FixedPointResult.singular.error_if(t, ~ok)
                return t * nan_unless(ok, rhs.dtype)

            return solve

        return jax.lax.custom_linear_solve(lambda t: t - jvp(t), b, solver(0), solver(1))

    def transpose(self, vjp, c, *, rtol, max_steps):
        return self._solve(vjp, c, rtol, max_steps)


def _probe_vector(n: int, dtype) -> Vector:
    r"""The certificate's fixed right-hand side: $n$ pseudo-random numbers in $[-1, 1)$, the
    32-bit MurmurHash3 finaliser of the element's index (a bijection of the integers that
    mixes every bit). Any fixed vector with a nonzero component along every eigenvector of
    $J$ serves, which a vector of no particular structure has with probability one; a hash is
    one elementwise operation to compile, where `jax.random.normal` (a threefry loop) was
    a tenth of a deep-equilibrium train step's compiled program."""
    h = jax.lax.iota(jnp.uint32, n) + jnp.uint32(0x9E3779B9)
    h = (h ^ (h >> 16)) * jnp.uint32(0x85EBCA6B)
    h = (h ^ (h >> 13)) * jnp.uint32(0xC2B2AE35)
    h = h ^ (h >> 16)
    # The top 24 bits, exact in float32 and float64.
    return ((h >> 8).astype(dtype) / 2**23 - 1).astype(dtype)


def _factorise(product: Product, eye: Array):
    """The LU factorisation of $I - J$, $J$ built column by column from `product` (`eye`,
    the identity of the state's size and dtype). A scalar state's factorisation is $1 - J$
    itself (no LAPACK call: under `vmap` over $10^6$ lanes a batched LU of 1 x 1 matrices
    costs more than the whole solve)."""
    n = eye.shape[0]
    jac = jax.vmap(product, out_axes=1)(eye)
    if n == 1:
        return eye - jac, jnp.zeros(1, jnp.int32)
    return jax.scipy.linalg.lu_factor(eye - jac)


def _lu_solve(factors, b: Vector, trans: int = 0) -> Vector:
    """$(I - J)^{-1} b$ (`trans=1`: $(I - J)^{-\top} b$) from `_factorise`'s factors."""
    if b.shape[0] == 1:
        return b / factors[0][0]
    return jax.scipy.linalg.lu_solve(factors, b, trans=trans)


def _well_conditioned(factors) -> Bool[Array, ""]:
    """Nonsingular to working precision: every pivot finite and above n·eps of the largest
    pivot or of 1 (the size of $I$, so that $I - J$ with $J \approx I$, all of whose pivots
    are cancellation, is singular)."""
    pivots = jnp.abs(jnp.diagonal(factors[0]))
    largest = jnp.maximum(jnp.max(pivots), 1)
    bound = pivots.shape[0] * jnp.finfo(pivots.dtype).eps * largest
    return jnp.isfinite(pivots).all() & (jnp.min(pivots) > bound)


def _dense_solve(product: Product, b: Vector) -> LinearSolve:
    """Factorise and solve once, with the true relative residual recomputed."""
    factors = _factorise(product, jnp.eye(b.shape[0], dtype=b.dtype))
    t = _lu_solve(factors, b)
    scale = norm(b)
    residual = norm(b - (t - product(t))) / jnp.where(scale > 0, scale, 1)
    return LinearSolve(t, jnp.asarray(1), _well_conditioned(factors), residual)


def _neumann_terms(product: Product, b: Vector, terms: int) -> Vector:
    r"""$\sum_{i < \text{terms}} J^i b$, unrolled (a handful of terms)."""
    total, term = b, b
    for _ in range(terms - 1):
        term = product(term)
        total = total + term
    return total


def _truncated_transpose(vjp: Product, c: Vector, terms: int) -> LinearSolve:
    u = _neumann_terms(vjp, c, terms)
    scale = norm(c)
    residual = norm(c - (u - vjp(u))) / jnp.where(scale > 0, scale, 1)
    return LinearSolve(u, jnp.asarray(terms), jnp.asarray(True), residual)


class JacobianFree(AbstractAdjoint):
    r"""**Approximate.** Jacobian-free backpropagation (Fung et al., 2022): $\dot x^\star
    \approx b = \partial_\theta f\,\dot\theta$, i.e. $(I - J)^{-1}$ replaced by $I$. Costs one
    product, no linear solve; the result is a descent direction for training when $f$
    contracts strongly, not the gradient. Opt in for deep-equilibrium training; never use it
    where the derivative's value matters (the solution's `backward_residual` says how far it
    is from the exact one)."""

    approximate: ClassVar[bool] = True

    def prepare(self, jvp, x, *, rtol, max_steps):
        return jnp.asarray(True), None

    def tangent(self, prepared, jvp, b, *, rtol, max_steps, throw):
        return b

    def transpose(self, vjp, c, *, rtol, max_steps):
        return _truncated_transpose(vjp, c, 1)


class Phantom(AbstractAdjoint):
    r"""**Approximate.** The Neumann phantom gradient (Geng et al., 2021): $(I - J)^{-1}$
    replaced by the first `terms` terms of its Neumann series, $\dot x^\star \approx
    \sum_{i < k} J^i b$. Costs $k - 1$ products; the error shrinks like $\rho^k$, so it is
    close to the exact derivative only when $f$ contracts strongly. Opt-in, for training.

    **Arguments:** `terms`, $k \ge 1$ (default 5; `terms=1` is `JacobianFree`)."""

    approximate: ClassVar[bool] = True
    terms: int = eqx.field(default=5, static=True)

    def check(self):
        count("Phantom", "terms", self.terms)

    def prepare(self, jvp, x, *, rtol, max_steps):
        return jnp.asarray(True), None

    def tangent(self, prepared, jvp, b, *, rtol, max_steps, throw):
        return _neumann_terms(jvp, b, self.terms)

    def transpose(self, vjp, c, *, rtol, max_steps):
        return _truncated_transpose(vjp, c, self.terms)
