"""`python -m cakejax transforms`: every layer tried under every transform."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

import cakejax as cj


TRANSFORMS = ("jit", "vmap", "grad", "jvp", "jacfwd", "jacrev", "hessian")


def _yeast(x):
    return jnp.sum(cj.YeastActivity(2.0)(x))


def _clip(x):
    clip = cj.GradientClip(0.1, mask=jnp.asarray([True, False, False, False]))
    return cj.Deliciousness()(clip(x))


def _fixed_point(**options):
    def f(theta):
        return cj.FixedPoint(cj.DoughMaturity(theta[0], theta[1]), **options)(0.0)

    return f


#: Each layer as a scalar function of a vector, and a point to try it at.
LAYERS: dict[str, tuple[Callable, tuple[float, ...]]] = {
    "YeastActivity": (_yeast, (-1.0, 0.5, 2.0, 500.0)),
    "GradientClip": (_clip, (1.0, 3.0, 2.0, 1.5)),
    "FixedPoint": (_fixed_point(), (0.75, 10.0)),
    "FixedPoint, Picard": (_fixed_point(solver=cj.Picard()), (0.75, 10.0)),
    "FixedPoint, Newton (a repelling point)": (_fixed_point(solver=cj.Newton()), (1.5, 10.0)),
    "FixedPoint, Implicit('neumann')": (_fixed_point(adjoint=cj.Implicit("neumann")),
                                        (0.75, 10.0)),
    "FixedPoint, Implicit('dense')": (_fixed_point(adjoint=cj.Implicit("dense")),
                                      (0.75, 10.0)),
    "FixedPoint, JacobianFree (approximate)": (_fixed_point(adjoint=cj.JacobianFree()),
                                               (0.75, 10.0)),
    "FixedPoint, Phantom (approximate)": (_fixed_point(adjoint=cj.Phantom()), (0.75, 10.0)),
}


def _apply(transform: str, f: Callable, x: jax.Array):
    if transform == "jit":
        return jax.jit(f)(x)
    if transform == "vmap":
        return jax.vmap(f)(jnp.stack([x, x]))
    if transform == "jvp":
        return jax.jvp(f, (x,), (jnp.ones_like(x),))
    return getattr(jax, transform)(f)(x)


def try_transform(layer: str, transform: str) -> str:
    """`✓` if the layer runs under the transform and gives finite numbers, else `✗` and the
    error's type."""
    f, point = LAYERS[layer]
    try:
        out = _apply(transform, f, jnp.asarray(point))
    except Exception as error:  # noqa: BLE001 - the table reports whatever is raised
        return f"✗ {type(error).__name__}"
    finite = all(np.all(np.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(out))
    return "✓" if finite else "✗ non-finite"


def table() -> str:
    """The transform-support table, in Markdown."""
    lines = ["| layer | " + " | ".join(TRANSFORMS) + " |",
             "|---|" + "---|" * len(TRANSFORMS)]
    for layer in LAYERS:
        cells = [try_transform(layer, t) for t in TRANSFORMS]
        lines.append(f"| `{layer}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)
