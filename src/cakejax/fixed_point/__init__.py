"""Implicit fixed points: the `FixedPoint` layer, its forward solvers (one per module), its
derivative rules (adjoints), and the results they report."""

from ._adjoint import (
    AbstractAdjoint as AbstractAdjoint,
    Implicit as Implicit,
    JacobianFree as JacobianFree,
    Phantom as Phantom,
)
from ._anderson import Anderson as Anderson
from ._layer import FixedPoint as FixedPoint, FixedPointSolution as FixedPointSolution
from ._newton import Newton as Newton
from ._picard import Picard as Picard
from ._results import FixedPointResult as FixedPointResult
from ._solver import AbstractFixedPointSolver as AbstractFixedPointSolver
