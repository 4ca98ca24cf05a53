r"""Jacobian regularisation for deep-equilibrium models: Hutchinson's estimate of
$\lVert \partial f/\partial x \rVert_F^2$."""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from ._arguments import count
from ._typing import arrays_of, describe_tree


def jacobian_penalty(
    fn: Callable[..., Any],
    x: PyTree[Float[Array, "..."]],
    *,
    key: PRNGKeyArray,
    samples: int = 1,
) -> Float[Array, ""]:
    r"""An unbiased estimate of $\lVert J \rVert_F^2$, $J = \partial\,\mathrm{fn}/\partial x$ at
    $x$, from vector-Jacobian products (Hutchinson's estimator):

    $$\lVert J \rVert_F^2 = \operatorname{tr}(J J^\top)
    = \mathbb{E}_{\varepsilon \sim N(0, I)}\,\lVert J^\top \varepsilon \rVert^2
    \approx \frac{1}{k} \sum_{i=1}^{k} \lVert J^\top \varepsilon_i \rVert^2 .$$

    Added to a training loss (Bai, Koltun and Kolter, *Stabilizing Equilibrium Models by
    Jacobian Regularization*, 2021) it keeps a deep-equilibrium map contracting: the spectral
    norm is at most the Frobenius norm. Differentiable with respect to `fn`'s parameters (an
    Equinox module's arrays, under `eqx.filter_grad`) and to `x`; usually `x` is the fixed
    point, `jax.lax.stop_gradient`-ed.

    Cost: one linearisation of `fn` and `samples` vector-Jacobian products (vmapped), never
    the Jacobian. The estimate's variance is $2\lVert J J^\top \rVert_F^2 / k$ for Gaussian
    $\varepsilon$: one sample per example, averaged over a batch, is what training uses.

    **Arguments:**

    - `fn`: a map from `x` to an output of any structure of floating arrays (a module, a
      function, `eqx.Partial`).
    - `x`: the point, a floating array or a PyTree of them.
    - `key`: a PRNG key for the probe vectors $\varepsilon$ (fresh each step).
    - `samples`: $k \ge 1$.

    **Returns:** the estimate, a scalar of `fn`'s output dtype.
    """
    samples = count("jacobian_penalty", "samples", samples)
    if not arrays_of(x, jnp.floating):
        raise TypeError(
            "jacobian_penalty: x must be a floating array or a PyTree of them, got "
            f"{describe_tree(x)}."
        )
    out, pullback = jax.vjp(fn, x)
    out_leaves, treedef = jax.tree_util.tree_flatten(out)
    if not arrays_of(out, jnp.floating):
        raise TypeError(
            "jacobian_penalty: fn must return a floating array or a PyTree of them, got "
            f"{describe_tree(out)}."
        )
    keys = jax.random.split(key, len(out_leaves))

    def squared_norm(probe):
        (cotangent,) = pullback(jax.tree_util.tree_unflatten(treedef, probe))
        return sum(jnp.sum(c**2) for c in jax.tree_util.tree_leaves(cotangent))

    probes = [
        jax.random.normal(k, (samples, *a.shape), a.dtype)
        for k, a in zip(keys, out_leaves, strict=True)
    ]
    return jnp.mean(eqx.filter_vmap(squared_norm)(probes))
