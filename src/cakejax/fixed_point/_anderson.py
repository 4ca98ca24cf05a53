r"""Anderson acceleration (type II, Walker & Ni 2011) with a regularised least-squares step."""

from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from .._arguments import count, tolerance
from .._typing import static_float
from ._solver import AbstractFixedPointSolver, Vector
from ._spd import solve_spd, UNROLLED


#: The default history: `HISTORY` differences for states of more than `SMALL_STATE` elements,
#: `SMALL_HISTORY` (solved by the unrolled elimination) up to it.
HISTORY = 20
SMALL_HISTORY = UNROLLED
SMALL_STATE = 256

#: Steps without a new smallest residual after which Anderson gives way to plain steps, and
#: after which plain steps give way to Anderson again (see the class's docstring).
FALLBACK = 20
RETURN = 40


class _AndersonState(NamedTuple):
    dx: Float[Array, "m n"] | None  # differences of the last m iterates, a ring buffer (m > 1)
    dg: Float[Array, "m n"] | None  # differences of their residuals g = f(x) - x (m > 1)
    gram: Float[Array, "m m"] | None  # dg dg^T, updated a row and a column a step (m > 1)
    x: Vector
    g: Vector
    steps: Int[Array, ""] | None  # steps taken so far, for the ring buffer's slot (m > 1)
    # The fallback's records (m > 1): the smallest squared residual since the last switch,
    # and the steps since it was last beaten, k, as k while extrapolating, -1 - k during
    # plain steps (one carried number: under vmap each carried array costs a kernel a step).
    best: Float[Array, ""] | None
    since: Int[Array, ""] | None


class Anderson(AbstractFixedPointSolver):
    r"""Anderson acceleration: each step combines the last $m$ iterates so as to minimise the
    linearised residual.

    With residuals $g_i = f(x_i) - x_i$ and the differences $\Delta X$, $\Delta G$ of the last
    $m + 1$ iterates and residuals (columns),
    $$\gamma = \arg\min_\gamma \|g_k - \Delta G\,\gamma\|_2^2 + \lambda\|\gamma\|_2^2,
    \qquad x_{k+1} = x_k + \beta g_k - (\Delta X + \beta\,\Delta G)\,\gamma,$$
    solved through the $m \times m$ normal equations. $\lambda$ is `regularisation` times the
    mean of $\operatorname{diag}(\Delta G^\top \Delta G)$: relative, so the step does not depend
    on the units of $x$. On a linear map Anderson is GMRES in disguise; on weak contractions it
    needs a small fraction of Picard's steps, at the cost of $O(m\,n)$ memory and work a step.

    **Plain steps first.** With a history shorter than the state, the solve begins with
    damped Picard steps $x + \beta g$, which carry no history, while each shrinks
    $\|g\|_\infty$ at least twofold (`SWITCH`); acceleration starts at the first step that
    does not, with that step's difference as its first history. A strong contraction (a
    deep-equilibrium layer at initialisation: about 0.2) converges before it: under `vmap`
    its history, selected lane by lane every step, cost 7x the solve (a 64-unit layer over
    128 examples: 4.1 -> 0.59 ms forward, Picard's 0.56 ms), while weak contractions
    (n = 1000, $\rho \ge 0.9$) take the same steps and time as before, within 7 %.

    **Arguments:**

    - `history`: $m$, the number of past iterates used, at most the state's size $n$ (more
      differences than $n$ are linearly dependent): a scalar state gets the secant method,
      exact in two steps on an affine map such as the course's dough. The Gram matrix
      $\Delta G^\top \Delta G$ is kept and one row and column updated a step ($O(m\,n)$,
      not $O(m^2 n)$). By default (`None`) 20 for states of more than `SMALL_STATE` (256)
      elements, 4 up to it. A long history saves steps on weak contractions ($n = 1000$,
      $\rho \ge 0.99$: a fifth of Picard's steps where 5 needs a third), where a step's cost
      is the map's. A small state is the deep-equilibrium layer's, solved per example under
      `vmap`: there the $m \times m$ least squares is the step's cost (LAPACK once per lane
      beyond 4 differences, an unrolled elimination up to 4), and 4 differences take at most
      twice the steps of 20 (n = 256, $\rho = 0.999$: 74 against 36; at $\rho \le 0.9$ and
      n = 64, 27 against 21) at a fifth of the cost a step: a 64-unit DEQ's train step after
      300 steps of training with `spectral_normalise`, 3.9 ms against 11.9 ms with 20
      (Picard 3.7 ms, optimistix 3.6 ms).
    - `damping`: $\beta \in (0, 1]$ (default 1).
    - `regularisation`: the relative Tikhonov weight (default `1e-8`: small enough not to bias
      the step in float32), keeping the least squares well posed when the history becomes
      nearly dependent near convergence. Should the system still be numerically singular
      (a non-finite step), that step falls back to the damped Picard step.

    **Plain steps where extrapolation stalls.** Anderson's extrapolation is not globally
    convergent: on a strongly nonlinear map its linear model, built from iterates where the
    Jacobian differs, can wander without converging where plain iteration converges (a
    deep-equilibrium layer in training, $\tanh(Wz + u)$ with $\|W\|_2 = 1.6$, contracting
    at 0.76 at its fixed point: Picard converges in 56 steps, Anderson with any history,
    this one or the textbook's, stalls at a residual of $10^{-2}$ for thousands). After
    `FALLBACK` (20) steps without a new smallest residual $\|g\|_2$ it takes damped Picard
    steps, and extrapolates again after `RETURN` (40) steps without one (counted from the
    switch; plain iteration's residual need not shrink every step either). Chosen on
    trained DEQ layers, 200 random maps with $\|W\|_2 = 3$ (where it solves every map
    Picard solves, 188 in all, against 176 without the fallback, at the default 256 steps) and
    weak contractions at $n = 1000$ (steps unchanged). The ring buffer keeps the last
    differences whichever steps made them. A scalar state's secant method has no fallback:
    its one difference is always the last step's, never stale, and the records cost 15 %
    of a batch of $10^6$ vmapped scalar solves.
    """

    history: int | None = eqx.field(default=None, static=True)
    damping: float = eqx.field(
        default=1.0, static=True, converter=static_float("Anderson", "damping")
    )
    regularisation: float = eqx.field(
        default=1e-8, static=True, converter=static_float("Anderson", "regularisation")
    )

    def check(self):
        if self.history is not None:
            count("Anderson", "history", self.history)
        tolerance("Anderson", "damping", self.damping, positive=True, at_most=1)
        tolerance("Anderson", "regularisation", self.regularisation)

    def advice(self, outcome: str) -> str:
        return {
            "max_steps_reached": " A longer history (cj.Anderson(history=...)) may help.",
            "diverged": (
                " Anderson's extrapolation can miss a fixed point that plain iteration "
                "reaches: try cj.Picard() (attracting fixed points) or cj.Newton() (repelling "
                "ones too)."
            ),
            "oscillating": " Try cj.Picard(0.5) (damped) or cj.Newton().",
        }.get(outcome, "")

    def _memory(self, x: Vector) -> int:
        """The history used: `history`, or by default `HISTORY` beyond `SMALL_STATE` elements
        and `SMALL_HISTORY` up to it; at most the state's size (beyond it the differences are
        dependent; a scalar state gets the secant method)."""
        n = x.shape[0]
        history = self.history
        if history is None:
            history = HISTORY if n > SMALL_STATE else SMALL_HISTORY
        return min(history, n)

    def plain_damping(self, x: Vector) -> float | None:
        # Where the history is shorter than the state, a step's history and least squares
        # cost several Picard steps (under vmap, the history is selected lane by lane every
        # step): a DEQ's 64 units with 4 differences, vmapped over 128 examples at
        # initialisation, 1.52 ms a train step without the plain phase, 0.94 with it. Where
        # it spans the state (m = n, at most 4) Anderson is a secant method converging in a
        # few steps, and plain steps first only add steps and a loop to compile: 200 000
        # vmapped solves of 4 states 365 -> 473 ms with them, first call 2.8 -> 3.2 s.
        m = self._memory(x)
        return self.damping if 1 < m < x.shape[0] else None

    def init(self, f: Callable[[Vector], Vector], x: Vector, fx: Vector) -> _AndersonState:
        m = self._memory(x)
        g = fx - x
        if m == 1:  # the secant method: the last iterate and residual are all it keeps
            return _AndersonState(None, None, None, x, g, None, None, None)
        zeros = jnp.zeros((m,) + x.shape, x.dtype)
        gram = jnp.zeros((m, m), x.dtype)
        since = jnp.zeros((), jnp.int32)
        return _AndersonState(zeros, zeros, gram, x, g, jnp.asarray(0), jnp.vdot(g, g), since)

    @staticmethod
    def _fallback(g: Vector, best: Float[Array, ""], since: Int[Array, ""]):
        """Whether this step is plain, and the fallback's new records: a switch between
        extrapolating and plain steps after FALLBACK (RETURN) steps without a new smallest
        residual, where the count and the record restart."""
        residual = jnp.vdot(g, g)
        plain = since < 0
        since = jnp.where(plain, -1 - since, since)
        switch = since >= jnp.where(plain, RETURN, FALLBACK)
        plain = plain ^ switch
        since = jnp.where(switch | (residual < best), 0, since + 1)
        best = jnp.where(switch, residual, jnp.minimum(residual, best))
        return plain, best, jnp.where(plain, -1 - since, since)

    def step(self, f: Callable[[Vector], Vector], x: Vector, fx: Vector, state: _AndersonState):
        m = self._memory(x)
        g = fx - x
        beta = self.damping
        # The first step is taken from the state `init` saw, so its differences are zero:
        # slots never written hold zeros, and a zero difference is never used (below).
        new_dx, new_dg = x - state.x, g - state.g
        if (
            state.dx is None
            or state.dg is None
            or state.gram is None
            or state.steps is None
            or state.best is None
            or state.since is None
        ):
            # The secant method (m = 1): the last difference, used once. Elementwise products,
            # as a batched 1 x 1 dot is a loop of tiny products under vmap.
            square = jnp.sum(new_dg * new_dg)
            used = square > 0
            denominator = jnp.where(used, square + self.regularisation * square, 1)
            gamma = jnp.where(used, jnp.sum(new_dg * g), 0) / denominator
            correction = (new_dx + beta * new_dg) * gamma
            new_state = _AndersonState(None, None, None, x, g, None, None, None)
            plain = jnp.asarray(False)
        else:
            # The ring buffer's slot written in place (a one-hot select instead, tried for
            # vmap's per-lane slots, measured 7-13 % slower on one n = 1000 solve and no
            # faster on the vmapped DEQ step).
            plain, best, since = self._fallback(g, state.best, state.since)
            slot = (state.steps - 1) % m
            dx = state.dx.at[slot].set(new_dx)
            dg = state.dg.at[slot].set(new_dg)
            # O(m n): only the replaced difference's row and column of the Gram matrix change.
            column = dg @ new_dg
            gram = state.gram.at[slot, :].set(column).at[:, slot].set(column)
            diagonal = jnp.diagonal(gram)
            # A difference whose residual did not change (or was never written) carries no
            # information and would make the system singular: it is left out.
            used = diagonal > 0
            written = jnp.maximum(jnp.sum(used), 1).astype(x.dtype)
            lam = self.regularisation * jnp.sum(jnp.where(used, diagonal, 0)) / written
            both = used[:, None] & used[None, :]
            system = jnp.where(both, gram, 0) + jnp.diag(jnp.where(used, lam, 1))
            rhs = jnp.where(used, dg @ g, 0)
            # The system is symmetric positive definite. Up to UNROLLED differences, an
            # unrolled elimination: under vmap LAPACK is called once per lane (200 000 vmapped
            # solves of 4 states: 690 -> 254 ms); beyond, Cholesky (128 vmapped 20 x 20
            # systems, the DEQ's: 255 us, LU 491 us).
            if m <= UNROLLED:
                gamma = solve_spd(system, rhs)
            else:
                gamma = jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(system), rhs)
            correction = (dx + beta * dg).T @ gamma
            new_state = _AndersonState(dx, dg, gram, x, g, state.steps + 1, best, since)
        x_new = x + beta * g - correction
        # A history too dependent for the regularisation gives a non-finite step: take the
        # plain (damped Picard) step instead, which the loop's own checks then judge.
        x_new = jnp.where(jnp.isfinite(x_new).all() & ~plain, x_new, x + beta * g)
        return x_new, new_state
