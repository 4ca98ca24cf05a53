r"""Small symmetric positive definite solves, unrolled into scalar operations."""

import jax.numpy as jnp
from jaxtyping import Array, Float


#: The largest system solved by `solve_spd`'s unrolled elimination ($m^3/3$ scalar operations:
#: at m = 8 a vmapped solve is 2.3x faster than LAPACK's but compiles 3x slower, 0.8 s).
UNROLLED = 4


def solve_spd(a: Float[Array, "m m"], b: Float[Array, " m"]) -> Float[Array, " m"]:
    r"""$a^{-1} b$ for a symmetric positive definite $a$ of at most `UNROLLED` rows, by
    Gaussian elimination without pivoting: for such an $a$ the pivots are those of its
    Cholesky factorisation, squared, and no pivot search is needed for stability.

    Each entry is its own scalar, so under `jax.vmap` every operation is one vectorised
    operation over the batch, where `jnp.linalg.solve` calls LAPACK once per lane: 200 000
    vmapped 4 x 4 solves take 2.4 ms, against 51 ms. A zero or negative pivot (a singular or
    indefinite $a$) gives a non-finite solution, as LAPACK does, for the caller to detect.
    """
    m = b.shape[0]
    if m > UNROLLED:
        raise ValueError(f"solve_spd: at most {UNROLLED} unknowns, got {m}.")
    rows = [[a[i, j] for j in range(m)] for i in range(m)]
    rhs = [b[i] for i in range(m)]
    for k in range(m):
        for i in range(k + 1, m):
            factor = rows[i][k] / rows[k][k]
            for j in range(k + 1, m):
                rows[i][j] = rows[i][j] - factor * rows[k][j]
            rhs[i] = rhs[i] - factor * rhs[k]
    x: list[Array] = [jnp.zeros((), b.dtype)] * m
    for i in reversed(range(m)):
        total = rhs[i]
        for j in range(i + 1, m):
            total = total - rows[i][j] * x[j]
        x[i] = total / rows[i][i]
    return jnp.stack(x)
