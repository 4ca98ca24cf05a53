"""Derivative tools that JAX leaves to the user: repeated `grad`, Hessian-vector products and
per-example gradients."""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PyTree, Shaped


def nth_derivative(f: Callable[..., Any], n: int) -> Callable[..., Any]:
    r"""The `n`-th derivative $f^{(n)}$ of a scalar function of one real scalar.

    $f^{(n)} = \frac{d}{dx} f^{(n-1)}$, i.e. `jax.grad` applied `n` times; `n = 0` returns `f`.

    **Arguments:**

    - `f`: a function $\mathbb{R} \to \mathbb{R}$ (scalar in, scalar out).
    - `n`: the order, a non-negative integer.

    **Returns:** a function computing $f^{(n)}(x)$.
    """
    if n < 0:
        raise ValueError(f"nth_derivative: the order n must be >= 0, got n={n}.")
    for _ in range(n):
        f = jax.grad(f)
    return f


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
    return jax.jvp(jax.grad(f), (x,), (v,))[1]


def per_example_grad(
    f: Callable[..., Float[Array, ""]],
    x: Float[ArrayLike, "*shape"],
    batch: PyTree[Shaped[Array, "batch ..."]],
) -> Float[Array, "batch *shape"]:
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
    return jax.vmap(jax.grad(f), in_axes=(None, 0))(jnp.asarray(x), batch)
