r"""The trust-region subproblem by Steihaug–Toint conjugate gradients, with Hessian-vector
products only.

Approximately solves $\min_p\ g^\top p + \tfrac12 p^\top H p$ subject to
$\|p\|_2 \le \Delta$ and $p_i = 0$ off the free set $F$ (the variables not held at a bound),
touching $H$ only through products $v \mapsto H v$. Conjugate gradients on $H_{FF} p = -g_F$
from $p = 0$, stopped

- at the boundary, when a step would leave the trust region (the step is cut at
  $\|p\| = \Delta$);
- along a direction of non-positive curvature $d^\top H d \le 0$, followed to the boundary
  (where $H$ is indefinite, as the course's score is at its own cake);
- when the residual $\|r\| \le \eta \|g_F\|$ with
  $\eta = \min(\tfrac12, \sqrt{\|g_F\| / g_s})$, the forcing term of inexact Newton methods
  (superlinear convergence near a solution), made dimensionless by the gradient's natural
  scale $g_s$ (the score's scale over the variables'), so that a score in any units takes
  the same steps;
- after $|F|$ iterations (exact in exact arithmetic);
- at a non-finite curvature $d^\top H d$ (an infinite second derivative, as
  $x^{1.2}$ has at 0): the first direction is then followed to the boundary, and the outer
  ratio test judges the step.

Each iteration costs one Hessian-vector product.

The iteration runs on $g/\|g\|$ and $H/\|g\|$, which have the same minimiser in the
trust region: the quadratic forms $r^\top r$ and $d^\top H d$ then stay of order one
however small the gradient gets (in float32, a score of order $10^{-12}$ near its optimum
would put $d^\top H d$ below the smallest normal number, read as zero curvature).
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int


def _to_boundary(p, d, radius):
    r"""$\tau \ge 0$ with $\|p + \tau d\| = \Delta$ (the positive root), written without
    cancellation."""
    dd, pd, pp = jnp.vdot(d, d), jnp.vdot(p, d), jnp.vdot(p, p)
    disc = jnp.sqrt(jnp.maximum(pd**2 + dd * (radius**2 - pp), 0))
    # tau = (-pd + disc) / dd = (radius² - pp) / (pd + disc): the second form when pd > 0.
    return jnp.where(
        pd > 0,
        (radius**2 - pp) / jnp.where(pd + disc > 0, pd + disc, 1),
        (-pd + disc) / jnp.where(dd > 0, dd, 1),
    )


def steihaug(
    hvp,
    g: Float[Array, " n"],
    free: Bool[Array, " n"],
    radius: Float[Array, ""],
    g_scale: Float[Array, ""],
) -> tuple[Float[Array, " n"], Int[Array, ""], Bool[Array, ""]]:
    """**Arguments:** `hvp`, $v \\mapsto Hv$; the gradient `g`; the free set `free`; the
    trust radius; the gradient's natural scale $g_s$. **Returns:** the step $p$ (zero off
    `free`), the number of Hessian-vector products, and whether it reached the trust region's
    boundary."""
    g = jnp.where(free, g, 0)
    g_norm = jnp.linalg.norm(g)
    unit = jnp.where(g_norm > 0, g_norm, 1)
    g = g / unit
    masked_hvp = lambda v: jnp.where(free, hvp(jnp.where(free, v, 0)), 0) / unit  # noqa: E731
    tolerance = jnp.minimum(0.5, jnp.sqrt(g_norm / g_scale))
    max_iterations = jnp.sum(free)

    def cond(state):
        _, _, _, k, done, _ = state
        return ~done & (k < max_iterations)

    def body(state):
        p, r, d, k, _, _ = state
        hd = masked_hvp(d)
        curvature = jnp.vdot(d, hd)
        rr = jnp.vdot(r, r)
        alpha = rr / jnp.where(curvature > 0, curvature, 1)
        p_next = p + alpha * d
        # A non-finite curvature (an infinite second derivative where an amount is 0): the
        # model says nothing along d, so the first direction goes to the edge and the
        # trust region's ratio test judges the step; later ones stop where they are.
        unknown = ~jnp.isfinite(curvature)
        leaves = (curvature <= 0) | (unknown & (k == 0)) | (jnp.linalg.norm(p_next) >= radius)
        p_edge = p + _to_boundary(p, d, radius) * d
        r_next = r + alpha * hd
        beta = jnp.vdot(r_next, r_next) / jnp.where(rr > 0, rr, 1)
        small = jnp.linalg.norm(r_next) <= tolerance
        p_out = jnp.where(leaves, p_edge, jnp.where(unknown, p, p_next))
        return (p_out, r_next, -r_next + beta * d, k + 1, leaves | small | unknown, leaves)

    zero = jnp.zeros_like(g)
    start = (zero, g, -g, jnp.asarray(0), g_norm == 0, jnp.asarray(False))
    p, _, _, steps, _, boundary = jax.lax.while_loop(cond, body, start)
    return p, steps, boundary
