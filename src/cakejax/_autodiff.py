"""Derivative tools that JAX leaves to the user: repeated `grad`, Hessian-vector products and
per-example gradients."""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.core  # for jax.core.Tracer (named, so that type checkers see it)
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PyTree, Shaped

from ._arguments import count, tolerance


def _scalar_loss(owner: str, what: str, out) -> None:
    """A clear error where `jax.grad` would say "Gradient only defined for scalar-output
    functions": `out` (an `eval_shape` result) must be one real number."""
    if not (hasattr(out, "shape") and out.shape == () and jnp.issubdtype(out.dtype, jnp.floating)):
        got = f"{out.dtype}{list(out.shape)}" if hasattr(out, "shape") else type(out).__name__
        raise TypeError(
            f"{owner}: {what} must return a real scalar (a loss or score), got {got}; "
            "reduce it first (e.g. jnp.sum or jnp.mean), or use jax.jacfwd/jax.jacrev for "
            "the Jacobian of a vector function."
        )


def _example(batch):
    """The shape and dtype of one example of `batch` (every leaf without its leading axis)."""
    return jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct(jnp.shape(a)[1:], jnp.result_type(a)), batch
    )


def nth_derivative(f: Callable[..., Any], n: int) -> Callable[..., Any]:
    r"""The `n`-th derivative $f^{(n)}$ of a scalar function of one real scalar.

    $f^{(n)} = \frac{d}{dx} f^{(n-1)}$, i.e. `jax.grad` applied `n` times; `n = 0` returns `f`.

    **Arguments:**

    - `f`: a function $\mathbb{R} \to \mathbb{R}$ (scalar in, scalar out).
    - `n`: the order, a non-negative integer.

    **Returns:** a function computing $f^{(n)}(x)$.
    """
    n = count("nth_derivative", "n", n, minimum=0)
    if n == 0:
        return f
    derivative = f
    for _ in range(n):
        derivative = jax.grad(derivative)

    def nth(x):
        _scalar_loss("nth_derivative", "f", jax.eval_shape(f, x))
        return derivative(x)

    return nth


def hvp(
    f: Callable[[Float[Array, "*shape"]], Float[Array, ""]],
    x: Float[ArrayLike, "*shape"],
    v: Float[ArrayLike, "*shape"],
) -> Float[Array, "*shape"]:
    r"""Hessian-vector product $H_f(x)\,v$ without forming the Hessian.

    Forward-over-reverse: $H_f(x)\,v = \frac{d}{dt}\nabla f(x + t v)\big|_{t=0}$, one `jax.jvp`
    of `jax.grad(f)`. It costs a small constant multiple of one gradient, whatever the
    dimension, where `jax.hessian` costs one gradient per input dimension.

    **Arguments:**

    - `f`: a scalar function of an array.
    - `x`: the point, any shape.
    - `v`: the direction, the shape of `x`.

    **Returns:** $H_f(x)\,v$, the shape of `x`.
    """
    x = jnp.asarray(x)
    v = jnp.asarray(v, dtype=x.dtype)
    _scalar_loss("hvp", "f", jax.eval_shape(f, x))
    return jax.jvp(jax.grad(f), (x,), (v,))[1]


def per_example_grad(
    f: Callable[..., Float[Array, ""]],
    x: Float[ArrayLike, "*shape"],
    batch: PyTree[Shaped[Array, "batch ..."]],
) -> Float[Array, " batch *shape"]:
    r"""Gradients $\nabla_x f(x, b_i)$ for every example $b_i$ of a batch, with $x$ shared.

    `jax.vmap(jax.grad(f), in_axes=(None, 0))(x, batch)`: one vectorised computation rather than
    a Python loop over the examples.

    **Arguments:**

    - `f`: a scalar function `f(x, example)`.
    - `x`: the shared point (e.g. the ingredients).
    - `batch`: the examples, every leaf with the batch as its leading axis (e.g. one target
      sweetness per customer).

    **Returns:** one gradient per example, shape `(batch, *x.shape)`.
    """
    x = jnp.asarray(x)
    _scalar_loss("per_example_grad", "f", eqx.filter_eval_shape(f, x, _example(batch)))
    return jax.vmap(jax.grad(f), in_axes=(None, 0))(x, batch)


def clipped_mean_grad(
    f: Callable[..., Float[Array, ""]],
    params: PyTree,
    batch: PyTree[Shaped[Array, "batch ..."]],
    *,
    max_norm: float | int,
) -> PyTree:
    r"""The mean of per-example gradients, each clipped to norm `max_norm` first: the
    gradient of DP-SGD (Abadi et al., 2016) before its noise,

    $$\bar g = \frac{1}{B}\sum_{i=1}^{B} g_i \min\Big(1, \frac{C}{\lVert g_i\rVert_2}\Big),
    \qquad g_i = \nabla_\theta f(\theta, b_i),$$

    where $\lVert g_i\rVert_2$ is the norm of example $i$'s whole gradient (all of
    `params`' inexact arrays together). This bounds each example's influence on the step by
    $C/B$ whatever the batch size, which a `GradientClip` inside the model cannot do: under
    `jax.grad` of a batch mean it sees each example's cotangent already divided by $B$ (and
    only with respect to its own input, not the parameters).

    Computed as `eqx.filter_vmap(eqx.filter_grad(f), in_axes=(None, 0))`: the $B$ gradients
    exist at once, $B$ times the parameters' memory.

    **Arguments:**

    - `f`: the per-example loss `f(params, example)`, a scalar.
    - `params`: the parameters, any PyTree (an Equinox model); gradients are taken with
      respect to its inexact arrays, as `eqx.filter_grad` does.
    - `batch`: the examples, every leaf with the batch as its leading axis.
    - `max_norm`: $C$, positive and finite.

    **Returns:** $\bar g$, the structure of `params` (`None` where `eqx.filter_grad` gives
    `None`).
    """
    max_norm = tolerance("clipped_mean_grad", "max_norm", max_norm, positive=True)
    sizes = {jnp.shape(leaf)[0] if jnp.ndim(leaf) else None for leaf in jax.tree.leaves(batch)}
    if 0 in sizes:
        raise ValueError(
            "clipped_mean_grad: the batch is empty (a leaf of `batch` has 0 examples along "
            "its leading axis), and the mean of no gradients is undefined: pass at least one "
            "example."
        )
    _scalar_loss("clipped_mean_grad", "f", eqx.filter_eval_shape(f, params, _example(batch)))
    grads = eqx.filter_vmap(eqx.filter_grad(f), in_axes=(None, 0))(params, batch)
    leaves = jax.tree_util.tree_leaves(grads)
    squared = sum(jnp.sum(leaf.reshape(leaf.shape[0], -1) ** 2, axis=1) for leaf in leaves)
    # min(1, C/‖g‖), written so that a zero gradient (factor 1) has no 0/0 anywhere.
    too_long = squared > max_norm**2
    factor = jnp.where(too_long, max_norm / jnp.sqrt(jnp.where(too_long, squared, 1)), 1)
    return jax.tree_util.tree_map(
        lambda g: jnp.mean(g * factor.reshape(-1, *(1,) * (g.ndim - 1)).astype(g.dtype), axis=0),
        grads,
    )


def close_over_tracers(fn, *example_args):
    """`fn`, or, if it closes over traced arrays that are not its own PyTree leaves (a lambda
    closing over the θ being differentiated), `fn` closure-converted so that those arrays
    become leaves and are differentiated too (otherwise they would leak out of an iterative
    solve's custom derivative rule). Used by `FixedPoint` and `optimise_recipe`."""
    converted = eqx.filter_closure_convert(fn, *example_args)
    own = {id(leaf) for leaf in jax.tree_util.tree_leaves(fn)}
    hidden = [
        c
        for c in jax.tree_util.tree_leaves(getattr(converted, "consts", ()))
        if isinstance(c, jax.core.Tracer) and id(c) not in own
    ]
    return converted if hidden else fn
