"""The unrolled elimination behind Anderson's small least-squares systems (`_spd.solve_spd`):
as accurate as LAPACK on symmetric positive definite systems of any scale, the same under
`jax.vmap`, non-finite on a singular system, and Anderson on small vmapped states agreeing
with optimistix."""

import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
import pytest
from hypothesis import given, settings, strategies as st

import cakejax as cj
from cakejax.fixed_point._spd import solve_spd, UNROLLED


@pytest.mark.usefixtures("x64")
@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(1, UNROLLED),
    seed=st.integers(0, 2**31 - 1),
    exponent=st.integers(-12, 12),
    ridge=st.floats(1e-6, 1.0),
)
def test_solves_spd_systems_to_their_conditioning(m, seed, exponent, ridge):
    """Against float64 LAPACK: the error is within a small multiple of cond(a)·eps, at any
    scale of a (1e-12 to 1e12: the elimination is scale-free) and any conditioning."""
    dtype = jnp.result_type(float)
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((m, m + 1))
    a = (g @ g.T + ridge * np.eye(m)) * 10.0**exponent
    b = rng.standard_normal(m)
    got = np.asarray(solve_spd(jnp.asarray(a, dtype), jnp.asarray(b, dtype)), np.float64)
    # The reference from the same rounded inputs, in float64.
    a32, b32 = np.asarray(jnp.asarray(a, dtype), np.float64), np.asarray(jnp.asarray(b, dtype))
    want = np.linalg.solve(a32, b32)
    eps = float(jnp.finfo(dtype).eps)
    bound = 20 * m * np.linalg.cond(a32) * eps * np.max(np.abs(want))
    assert np.max(np.abs(got - want)) <= bound


def test_vmapped_is_the_per_lane_solve():
    """Under jax.vmap (the reason for unrolling) each lane is solved as on its own."""
    rng = np.random.default_rng(0)
    g = rng.standard_normal((1000, 4, 5)).astype(np.float32)
    a = jnp.asarray(g @ g.transpose(0, 2, 1) + 0.1 * np.eye(4, dtype=np.float32))
    b = jnp.asarray(rng.standard_normal((1000, 4)).astype(np.float32))
    batched = np.asarray(jax.jit(jax.vmap(solve_spd))(a, b))
    single = np.stack([np.asarray(solve_spd(a[i], b[i])) for i in range(0, 1000, 97)])
    np.testing.assert_allclose(batched[::97], single, rtol=1e-5, atol=0)
    want = np.linalg.solve(np.asarray(a, np.float64), np.asarray(b, np.float64)[..., None])[..., 0]
    np.testing.assert_allclose(batched, want, rtol=2e-3, atol=1e-5 * np.abs(want).max())


def test_singular_systems_are_not_finite_and_large_ones_refused():
    """A zero pivot gives inf/NaN, which Anderson's step detects (it then takes the plain
    step), as LAPACK's solve does; more than UNROLLED unknowns is a clear error."""
    singular = jnp.asarray([[1.0, 1.0], [1.0, 1.0]])
    assert not bool(jnp.isfinite(solve_spd(singular, jnp.asarray([1.0, 2.0]))).all())
    with pytest.raises(ValueError, match=f"at most {UNROLLED} unknowns, got 5"):
        solve_spd(jnp.eye(5), jnp.ones(5))


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(2, UNROLLED))
def test_anderson_on_small_vmapped_states_agrees_with_optimistix(seed, n):
    """FixedPoint's defaults on 64 vmapped maps x -> tanh(A x + b) of n <= 4 states (Anderson
    with history n, its least squares by `solve_spd`) against optimistix's fixed-point
    iteration at a tight tolerance: the same fixed points to the requested accuracy."""
    key_a, key_b = jax.random.split(jax.random.key(seed))
    a = jax.random.uniform(key_a, (64, n, n), minval=-1, maxval=1) * (0.95 / n)
    b = jax.random.normal(key_b, (64, n))

    def ours(a, b):
        return cj.FixedPoint(lambda x: jnp.tanh(a @ x + b))(jnp.zeros(n))

    def peer(a, b):
        solver = optx.FixedPointIteration(rtol=1e-6, atol=1e-6)
        return optx.fixed_point(
            lambda x, _: jnp.tanh(a @ x + b), solver, jnp.zeros(n), max_steps=10_000
        ).value

    got, want = jax.jit(jax.vmap(ours))(a, b), jax.jit(jax.vmap(peer))(a, b)
    scale = np.maximum(np.abs(np.asarray(want)).max(axis=1, keepdims=True), 1e-3)
    assert np.all(np.abs(np.asarray(got) - np.asarray(want)) <= 1e-4 * scale)
