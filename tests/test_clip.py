"""GradientClip: identity forward, clipped cotangent backward."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings, strategies as st
from jax.test_util import check_grads
from jaxtyping import TypeCheckError

import cakejax as cj
from cakejax import _course as course
from cakejax.examples import cake

from .helpers import assert_course, cakes, run_python


BUTTER = [True, False, False, False]


def test_course_clipped_gradient(x64):
    x = cake()
    clip = cj.GradientClip(course.BUTTER_CLIP, mask=BUTTER)
    score = cj.Deliciousness()
    assert_course(jax.grad(score)(x), course.DELICIOUSNESS_GRAD)
    assert_course(jax.grad(lambda v: score(clip(v)))(x), course.CLIPPED_GRAD)
    # The forward pass is the identity.
    np.testing.assert_array_equal(clip(x), x)


@settings(max_examples=20)
@given(x=cakes)
def test_value_mode_is_a_clip_of_the_gradient(x64, x):
    score = cj.Deliciousness()
    g = jax.grad(score)(x)
    for mask in (None, BUTTER, [False, True, True, False]):
        clip = cj.GradientClip(0.5, mask=mask)
        selected = np.ones(4, bool) if mask is None else np.asarray(mask)
        expected = np.where(selected, np.clip(g, -0.5, 0.5), g)
        np.testing.assert_allclose(jax.grad(lambda v, c=clip: score(c(v)))(x), expected, rtol=1e-6)


@settings(max_examples=20)
@given(x=cakes)
def test_norm_mode_rescales_to_the_bound(x64, x):
    score = cj.Deliciousness()
    g = np.asarray(jax.grad(score)(x))
    for bound in (0.3, 1e6):
        clip = cj.GradientClip(bound, mode="norm")
        expected = g * min(1.0, bound / np.linalg.norm(g))
        np.testing.assert_allclose(jax.grad(lambda v, c=clip: score(c(v)))(x), expected, rtol=1e-5)
    masked = cj.GradientClip(0.3, mask=[False, True, True, True], mode="norm")
    tail = g[1:] * min(1.0, 0.3 / np.linalg.norm(g[1:]))
    np.testing.assert_allclose(
        jax.grad(lambda v: score(masked(v)))(x), np.concatenate([g[:1], tail]), rtol=1e-5
    )


def test_per_example_clipping_under_vmap(x64):
    # Each example's cotangent is clipped on its own.
    score = cj.Deliciousness()
    clip = cj.GradientClip(1.0, mode="norm")
    batch = jnp.stack([cake(), cake() * 0.5, cake() + 1.0])
    per_example = jax.vmap(jax.grad(lambda v: score(clip(v))))(batch)
    for row, x in zip(per_example, batch, strict=True):
        g = np.asarray(jax.grad(score)(x))
        np.testing.assert_allclose(row, g * min(1.0, 1.0 / np.linalg.norm(g)), rtol=1e-5)
        assert np.linalg.norm(row) <= 1.0 + 1e-6


def test_jit_jacrev_hessian_and_filter_grad(x64):
    class Baker(eqx.Module):
        clip: cj.GradientClip
        score: cj.Deliciousness

        def __call__(self, x):
            return self.score(self.clip(x))

    baker = Baker(cj.GradientClip(0.1, mask=BUTTER), cj.Deliciousness())
    x = cake()
    expected = jax.grad(baker)(x)
    np.testing.assert_allclose(jax.jit(jax.grad(lambda v: baker(v)))(x), expected)
    np.testing.assert_allclose(jax.jacrev(baker)(x), expected)
    # Parameters downstream of the clip are unaffected: their gradient is the unclipped one.
    grads = eqx.filter_grad(lambda b: b(x))(baker)
    unclipped = eqx.filter_grad(lambda s: s(x))(baker.score)
    np.testing.assert_allclose(grads.score.cost_weight, unclipped.cost_weight)
    # Hessian (forward-over-reverse): the clipped butter row saturates (|g| > 0.1), so it is 0;
    # the other rows are the unclipped Hessian's.
    hessian = jax.hessian(baker)(x)
    plain = jax.hessian(baker.score)(x)
    np.testing.assert_allclose(hessian[0], 0.0, atol=1e-7)
    np.testing.assert_allclose(hessian[1:], plain[1:], rtol=1e-5)


def test_forward_mode_is_a_clear_error():
    clip = cj.GradientClip(0.1)
    x = cake()
    with pytest.raises(TypeError, match="forward-mode autodiff.*custom_vjp"):
        jax.jvp(clip, (x,), (x,))
    with pytest.raises(TypeError, match="forward-mode autodiff.*custom_vjp"):
        jax.jacfwd(clip)(x)


def test_check_grads_reverse_below_the_bound(f64):
    # With a bound the gradient never reaches, the clip is invisible: reverse mode and
    # forward-over-reverse agree with finite differences.
    clip = cj.GradientClip(1e6)
    score = cj.Deliciousness()
    check_grads(lambda v: score(clip(v)), (cake(),), order=2, modes=("rev",))


@pytest.mark.parametrize("bound", [0.0, -1.0, float("inf"), float("nan")])
def test_bad_bound(bound):
    with pytest.raises(ValueError, match="GradientClip: field 'bound' must be positive and finite"):
        cj.GradientClip(bound)


def test_mask_shape_is_checked():
    clip = cj.GradientClip(0.1, mask=[True, False])
    with pytest.raises(
        TypeCheckError,
        match=r"GradientClip: field 'mask' has shape \(2,\), "
        r"the input x \(4,\)",
    ):
        clip(cake())
    with pytest.raises(TypeCheckError, match="'mask'"):
        cj.GradientClip(0.1, mask=[1.0, 0.0])


def test_under_a_batch_mean_the_clip_sees_each_cotangent_divided_by_the_batch(x64):
    # What the guide (docs/guide.md) says, exactly: inside jax.grad of a batch mean, example i's
    # input gradient is clip(g_i / B); under vmap(grad) it is clip(g_i).
    score, clip = cj.Deliciousness(), cj.GradientClip(0.1)
    batch = jnp.stack([cake(), 1.5 * cake(), 0.5 * cake()])
    size = batch.shape[0]
    own = jax.vmap(jax.grad(score))(batch)
    through_mean = jax.grad(lambda b: jnp.mean(jax.vmap(lambda v: score(clip(v)))(b)))(batch)
    np.testing.assert_allclose(through_mean, jnp.clip(own / size, -0.1, 0.1), rtol=1e-6)
    per_example = jax.vmap(jax.grad(lambda v: score(clip(v))))(batch)
    np.testing.assert_allclose(per_example, jnp.clip(own, -0.1, 0.1), rtol=1e-6)


class _Regression(eqx.Module):
    weight: jax.Array
    activation: cj.YeastActivity
    steps: jax.Array  # an integer leaf: no gradient, and not clipped

    def __call__(self, x):
        return jnp.sum(self.activation(self.weight @ x))


@settings(max_examples=15)
@given(max_norm=st.floats(1e-6, 1e6), scale=st.floats(1e-6, 1e6))
def test_clipped_mean_grad_is_the_dp_sgd_loop(f64, max_norm, scale):
    key_w, key_x, key_y = jax.random.split(jax.random.key(0), 3)
    model = _Regression(jax.random.normal(key_w, (3, 4)), cj.YeastActivity(2.0), jnp.asarray(7))
    xs = jax.random.normal(key_x, (5, 4))
    ys = scale * jax.random.normal(key_y, (5,))

    def loss(m, example):
        x, y = example
        return (m(x) - y) ** 2

    got = cj.clipped_mean_grad(loss, model, (xs, ys), max_norm=max_norm)
    # The explicit loop: each example's whole gradient, its norm over every leaf, clipped.
    clipped = []
    for x, y in zip(xs, ys, strict=True):
        g = eqx.filter_grad(loss)(model, (x, y))
        leaves = jax.tree_util.tree_leaves(g)
        norm = float(np.sqrt(sum(np.sum(np.asarray(leaf) ** 2) for leaf in leaves)))
        clipped.append(jax.tree_util.tree_map(lambda a, n=norm: a * min(1.0, max_norm / n), g))
    want = jax.tree_util.tree_map(lambda *a: sum(a) / len(a), *clipped)
    assert got.steps is None
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10)
    # And the peer: optax's per-example clip sums; the mean divides by the batch.
    with jax.numpy_dtype_promotion("standard"):
        grads = eqx.filter_vmap(eqx.filter_grad(loss), in_axes=(None, 0))(model, (xs, ys))
        summed, _ = optax.per_example_global_norm_clip(jax.tree_util.tree_leaves(grads), max_norm)
    for a, b in zip(jax.tree_util.tree_leaves(got), summed, strict=True):
        np.testing.assert_allclose(a, b / 5, rtol=1e-10)


@pytest.mark.parametrize("max_norm", [0.0, -1, float("inf"), float("nan")])
def test_clipped_mean_grad_bad_max_norm(max_norm):
    with pytest.raises(ValueError, match="clipped_mean_grad: max_norm must be a finite number > 0"):
        cj.clipped_mean_grad(lambda p, e: p * e, jnp.asarray(1.0), jnp.ones(3), max_norm=max_norm)


@pytest.mark.parametrize("mask", [[True], [True, False, True], [[True] * 4] * 2])
def test_mask_shape_is_checked_with_type_checks_off(mask):
    # A (1,) mask would broadcast and clip everything; others crash inside JAX: all refused.
    out = run_python(
        "import jax, cakejax as cj, jax.numpy as jnp\n"
        f"clip = cj.GradientClip(0.1, mask={mask!r})\n"
        "try:\n    jax.grad(lambda v: jnp.sum(clip(v) * v))(jnp.ones(4))\n"
        "except Exception as error:\n    print(type(error).__name__, error)\n",
        CAKEJAX_TYPECHECK="0",
    )
    assert out.startswith("TypeCheckError GradientClip: field 'mask' has shape"), out
