"""`spectral_bound` and `spectral_normalise` (issue 32): a guaranteed upper bound on the
spectral norm, within its stated slack, at any scale and shape; the normalised matrix within
the bound; derivatives by finite differences."""

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from jax.test_util import check_grads

import cakejax as cj


def _sigma(W) -> float:
    return float(np.linalg.norm(np.asarray(W, np.float64), 2))


@settings(max_examples=30)
@given(
    st.integers(1, 24),
    st.integers(1, 24),
    st.sampled_from([1e-12, 1e-3, 1.0, 1e3, 1e12]),
    st.integers(0, 2**31 - 1),
    st.booleans(),
)
def test_bound_is_above_the_norm_within_its_slack(x64, rows, cols, scale, seed, low_rank):
    key_a, key_b = jax.random.split(jax.random.key(seed))
    W = jax.random.normal(key_a, (rows, cols))
    if low_rank:  # repeated singular values: the slack's worst case
        W = jnp.outer(W[:, 0], jax.random.normal(key_b, (cols,)))
    W = scale * W
    rounding = 1e-10 if x64 else 2e-6
    sigma, upper = _sigma(W), float(cj.spectral_bound(W))
    rank = min(rows, cols)
    assert sigma * (1 - rounding) <= upper <= sigma * rank ** (1 / 512) * (1 + rounding)
    normalised = cj.spectral_normalise(W, 0.5 * sigma)
    assert _sigma(normalised) <= 0.5 * sigma * (1 + rounding)
    kept = cj.spectral_normalise(W, 2 * sigma)
    np.testing.assert_array_equal(kept, W)


def test_derivatives(f64):
    W = jax.random.normal(jax.random.key(0), (5, 4))
    check_grads(lambda W: cj.spectral_normalise(W, 1.0), (W,), order=2, modes=["fwd", "rev"])
    check_grads(cj.spectral_bound, (W,), order=1, modes=["fwd", "rev"])
    # The bound's gradient is the top singular pair's outer product (a simple top value).
    u, s, vt = np.linalg.svd(np.asarray(W))
    np.testing.assert_allclose(jax.grad(cj.spectral_bound)(W), np.outer(u[:, 0], vt[0]), atol=1e-8)


def test_zero_matrix_and_transforms():
    zero = jnp.zeros((3, 3))
    assert float(cj.spectral_bound(zero)) == 0.0
    grad = jax.grad(lambda W: jnp.sum(cj.spectral_normalise(W)))(zero)
    assert bool(jnp.isfinite(grad).all())
    Ws = jax.random.normal(jax.random.key(1), (6, 8, 8))
    batched = jax.jit(jax.vmap(cj.spectral_normalise))(Ws)
    for W, b in zip(Ws, batched, strict=True):
        np.testing.assert_allclose(b, cj.spectral_normalise(W), rtol=1e-6)
        assert _sigma(b) <= 0.95 * (1 + 2e-6)


def test_bad_arguments():
    with pytest.raises((TypeError, ValueError), match="spectral_normalise.*bound"):
        cj.spectral_normalise(jnp.ones((2, 2)), -1.0)
    with pytest.raises((TypeError, ValueError), match="spectral_bound.*squarings"):
        cj.spectral_bound(jnp.ones((2, 2)), squarings=True)


@pytest.mark.parametrize("n", [3, 64, 100])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_matrix_has_no_finite_bound(n, bad):
    """A NaN or infinite entry anywhere (64 x 64 and 100 x 100 have 4096 or more entries,
    where a CPU max drops NaN) gives a non-finite bound, never a finite one; normalising it
    never gives a finite matrix."""
    W = jnp.eye(n).at[n // 2, n - 1].set(bad)
    assert not np.isfinite(cj.spectral_bound(W))
    assert not np.isfinite(cj.spectral_normalise(W)).all()


@settings(max_examples=20, deadline=None)
@given(
    rows=st.integers(1, 9),
    cols=st.integers(1, 9),
    squarings=st.integers(0, 3),
    scale=st.sampled_from([1e-6, 1.0, 1e6]),
    seed=st.integers(0, 2**16),
)
def test_closed_form_derivative_is_the_definitions(rows, cols, squarings, scale, seed):
    """The bound's JVP rule (V G^k / tr(G^(k+1)), from the power the value computed) equals
    the derivative of its definition tr((W^T W)^(k+1))^(1/(2k+2)), k = 2^squarings, written out
    with a matrix power and differentiated by JAX, tall and wide, at any scale (float64)."""
    with jax.enable_x64(True):
        W = scale * jax.random.normal(jax.random.key(seed), (rows, cols), jnp.float64)
        k = 2**squarings

        def definition(W):
            return jnp.trace(jnp.linalg.matrix_power(W.T @ W, k + 1)) ** (1 / (2 * k + 2))

        tangent = jax.random.normal(jax.random.key(seed + 1), W.shape, jnp.float64)
        ours = jax.jvp(lambda W: cj.spectral_bound(W, squarings=squarings), (W,), (tangent,))
        exact = jax.jvp(definition, (W,), (tangent,))
        np.testing.assert_allclose(ours[0], exact[0], rtol=1e-10)
        np.testing.assert_allclose(ours[1], exact[1], rtol=1e-8, atol=1e-12 * float(exact[0]))
        np.testing.assert_allclose(
            jax.grad(lambda W: cj.spectral_bound(W, squarings=squarings))(W),
            jax.grad(definition)(W),
            rtol=1e-8,
            atol=1e-12,
        )
