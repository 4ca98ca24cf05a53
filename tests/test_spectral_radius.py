"""`spectral_radius` from Jacobian-vector products (issue 32): against the dense Jacobian's
eigenvalues, including a complex leading pair where power iteration fails."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cakejax as cj
from cakejax._spectral_radius import _radius_of_small


def _exact(fn, x) -> float:
    return float(np.max(np.abs(np.linalg.eigvals(np.asarray(jax.jacfwd(fn)(x), np.float64)))))


def _matrix(n, kind, seed=0):
    A = jax.random.normal(jax.random.key(seed), (n, n)) / jnp.sqrt(n)
    if kind == "symmetric":
        return (A + A.T) / 2
    if kind == "complex pair":  # leading pair 0.6 ± 0.67i (modulus 0.9), non-normal
        return (0.2 * A).at[:2, :2].set(jnp.array([[0.6, -1.5], [0.3, 0.6]]))
    return A


@pytest.mark.parametrize("kind", ["random", "symmetric", "complex pair"])
@pytest.mark.parametrize("n", [8, 64, 300])
def test_against_dense_eigenvalues(x64, n, kind):
    A = _matrix(n, kind)
    b = jax.random.normal(jax.random.key(1), (n,))
    for fn in (lambda x: A @ x + b, lambda x: jnp.tanh(A @ x + b)):
        x = jnp.full(n, 0.1)
        estimate = float(cj.spectral_radius(fn, x))
        # Exact when steps >= n; within 5 % at 20 steps otherwise (as documented).
        assert estimate == pytest.approx(_exact(fn, x), rel=1e-4 if n <= 20 else 0.05)


def test_a_complex_pair_defeats_power_iteration_not_this():
    """A non-normal rotation-like block with eigenvalues 0.6 ± 0.67i: power iteration's
    growth ratios keep oscillating (between the block's singular values); the Arnoldi
    estimate is the modulus."""
    A = _matrix(64, "complex pair")
    estimate = float(cj.spectral_radius(lambda x: A @ x, jnp.zeros(64)))
    assert estimate == pytest.approx(_exact(lambda x: A @ x, jnp.zeros(64)), rel=0.01)
    v = jnp.ones(64) / 8
    quotients = []
    for _ in range(60):
        w = A @ v
        quotients.append(float(jnp.linalg.norm(w)))
        v = w / jnp.linalg.norm(w)
    assert max(quotients[-10:]) - min(quotients[-10:]) > 0.05  # still oscillating


def test_small_matrices_by_gelfand():
    assert float(_radius_of_small(jnp.array([[0.0, 1.0], [0.0, 0.0]]), 40)) == 0.0  # nilpotent
    assert float(_radius_of_small(jnp.array([[0.0, -2.0], [2.0, 0.0]]), 40)) == pytest.approx(2)
    jordan = jnp.array([[0.5, 1.0], [0.0, 0.5]])  # a Jordan block: ||H^m|| ~ m 0.5^m
    assert float(_radius_of_small(jordan, 40)) == pytest.approx(0.5, rel=1e-6)


def test_pytrees_jit_vmap_and_a_fixed_point():
    A = _matrix(16, "random") * 0.5
    fn = lambda t: {"a": jnp.tanh(A[:8] @ jnp.concatenate([t["a"], t["b"]])), "b": t["b"] * 0.3}  # noqa: E731
    tree = {"a": jnp.zeros(8), "b": jnp.ones(8)}
    flat = (
        lambda v: jnp.concatenate(  # noqa: E731
            [(o := fn({"a": v[:8], "b": v[8:]}))["a"], o["b"]]
        )
    )
    exact = _exact(flat, jnp.concatenate([tree["a"], tree["b"]]))
    assert float(jax.jit(lambda t: cj.spectral_radius(fn, t))(tree)) == pytest.approx(
        exact, rel=1e-4
    )
    xs = jnp.stack([jnp.zeros(16), jnp.full(16, 0.5)])
    cell = lambda x: jnp.tanh(A @ x)  # noqa: E731
    batched = jax.vmap(lambda x: cj.spectral_radius(cell, x))(xs)
    np.testing.assert_allclose(batched, [_exact(cell, x) for x in xs], rtol=1e-4)
    # At the fixed point of a DEQ cell, as a training loop would monitor it.
    x_star = cj.FixedPoint(lambda x: jnp.tanh(A @ x + 0.1))(jnp.zeros(16))
    rho = float(cj.spectral_radius(lambda x: jnp.tanh(A @ x + 0.1), x_star))
    assert rho == pytest.approx(_exact(lambda x: jnp.tanh(A @ x + 0.1), x_star), rel=1e-4)


def test_bad_arguments():
    with pytest.raises((TypeError, ValueError), match=r"(?s)spectral_radius.*steps"):
        cj.spectral_radius(jnp.tanh, jnp.ones(3), steps=0)
    with pytest.raises(TypeError, match="spectral_radius: fn must map x to a state"):
        cj.spectral_radius(lambda x: x[:2], jnp.ones(3))


@pytest.mark.parametrize("n", [3, 64, 100])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_jacobian_has_no_finite_radius(n, bad):
    """A map with a NaN or infinite parameter gave a radius of exactly 1 (the rescaling read
    NaN as 0); now it is not finite."""
    W = jnp.eye(n).at[n // 2, n - 1].set(bad) * 0.5
    assert not np.isfinite(cj.spectral_radius(lambda x: W @ x, jnp.ones(n)))
