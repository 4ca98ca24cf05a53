"""GradientClip: identity forward, clipped cotangent backward."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from jax.test_util import check_grads
from jaxtyping import TypeCheckError

import cakejax as cj
from cakejax import _course as course

from .helpers import assert_course, cake, cakes


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
        np.testing.assert_allclose(jax.grad(lambda v: score(clip(v)))(x), expected, rtol=1e-6)


@settings(max_examples=20)
@given(x=cakes)
def test_norm_mode_rescales_to_the_bound(x64, x):
    score = cj.Deliciousness()
    g = np.asarray(jax.grad(score)(x))
    for bound in (0.3, 1e6):
        clip = cj.GradientClip(bound, mode="norm")
        expected = g * min(1.0, bound / np.linalg.norm(g))
        np.testing.assert_allclose(jax.grad(lambda v: score(clip(v)))(x), expected, rtol=1e-5)
    masked = cj.GradientClip(0.3, mask=[False, True, True, True], mode="norm")
    tail = g[1:] * min(1.0, 0.3 / np.linalg.norm(g[1:]))
    np.testing.assert_allclose(jax.grad(lambda v: score(masked(v)))(x),
                               np.concatenate([g[:1], tail]), rtol=1e-5)


def test_per_example_clipping_under_vmap(x64):
    # Each example's cotangent is clipped on its own.
    score = cj.Deliciousness()
    clip = cj.GradientClip(1.0, mode="norm")
    batch = jnp.stack([cake(), cake() * 0.5, cake() + 1.0])
    per_example = jax.vmap(jax.grad(lambda v: score(clip(v))))(batch)
    for row, x in zip(per_example, batch):
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
    with pytest.raises(TypeCheckError, match="parameter 'mask'"):
        clip(cake())
    with pytest.raises(TypeCheckError, match="'mask'"):
        cj.GradientClip(0.1, mask=[1.0, 0.0])
