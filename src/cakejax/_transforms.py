"""`python -m cakejax transforms`: every layer tried under every transform, by the same code
that checks a user's layer (`cakejax.testing.check_transforms`)."""

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp

import cakejax as cj
from cakejax.testing import check_transforms, transform_table, TRANSFORMS as TRANSFORMS


def _fixed_point(**options) -> tuple[Any, tuple]:
    return cj.FixedPoint(cj.DoughMaturity(0.75, 10.0), **options), (0.0,)


#: Each layer, built when asked (so in the float precision then in force), with the inputs
#: to try it at. A FixedPoint is differentiated with respect to its map's parameters
#: (retention, boost) and its start.
LAYERS: dict[str, Callable[[], tuple[Any, tuple]]] = {
    "YeastActivity": lambda: (cj.YeastActivity(2.0), (jnp.asarray([-1.0, 0.5, 2.0, 500.0]),)),
    "GradientClip": lambda: (cj.GradientClip(0.1, mask=[True, False, False, False]),
                             (jnp.asarray([1.0, 3.0, 2.0, 1.5]),)),
    "StraightThrough(jnp.round)": lambda: (cj.StraightThrough(jnp.round),
                                           (jnp.asarray([0.3, -1.4, 2.6]),)),
    "GradientScale(0.5)": lambda: (cj.GradientScale(0.5), (jnp.asarray([0.3, -1.4, 2.6]),)),
    "GradientReversal()": lambda: (cj.GradientReversal(), (jnp.asarray([0.3, -1.4, 2.6]),)),
    "FixedPoint": lambda: _fixed_point(),
    "FixedPoint, Picard": lambda: _fixed_point(solver=cj.Picard()),
    "FixedPoint, Newton (a repelling point)": lambda: (
        cj.FixedPoint(cj.DoughMaturity(1.5, 10.0), solver=cj.Newton()), (0.0,)),
    "FixedPoint, Implicit('neumann')": lambda: _fixed_point(adjoint=cj.Implicit("neumann")),
    "FixedPoint, Implicit('dense')": lambda: _fixed_point(adjoint=cj.Implicit("dense")),
    "FixedPoint, JacobianFree (approximate)": lambda: _fixed_point(adjoint=cj.JacobianFree()),
    "FixedPoint, Phantom (approximate)": lambda: _fixed_point(adjoint=cj.Phantom()),
}


def table() -> str:
    """The transform-support table, in Markdown."""
    rows = {}
    for name, build in LAYERS.items():
        layer, args = build()
        rows[name] = check_transforms(layer, *args)
    return transform_table(rows)
