"""Shared problems of the FixedPoint tests: the course's dough map with its analytic fixed
point and derivatives, and the combinations of solver and adjoint."""

import jax.numpy as jnp
import numpy as np

import cakejax as cj
from cakejax.examples import dough_maturity


#: The final dough maturity m* = b / (1 - a) as a function of (a, b).
maturity = dough_maturity


def analytic(a, b):
    """m*, its gradient and Hessian in (a, b)."""
    value = b / (1 - a)
    grad = np.asarray([b / (1 - a) ** 2, 1 / (1 - a)])
    hessian = np.asarray([[2 * b / (1 - a) ** 3, 1 / (1 - a) ** 2], [1 / (1 - a) ** 2, 0.0]])
    return value, grad, hessian


SOLVERS = {
    "Anderson": cj.Anderson(),
    "Picard": cj.Picard(),
    "Picard(0.5)": cj.Picard(0.5),
    "Newton": cj.Newton(),
}
EXACT_ADJOINTS = {
    "gmres": cj.Implicit("gmres"),
    "neumann": cj.Implicit("neumann"),
    "dense": cj.Implicit("dense"),
}
#: float64 settings for float64 accuracy.
TIGHT = {"rtol": 1e-12, "max_steps": 4000}


def params(a, b):
    return jnp.asarray([a, b], dtype=float)
