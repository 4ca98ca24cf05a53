"""Custom-derivative layers: YeastActivity (custom_jvp), GradientClip (custom_vjp) and
FixedPoint (implicit differentiation)."""

from ._clip import GradientClip as GradientClip
from ._fixed_point import (
    FixedPoint as FixedPoint,
    FixedPointResult as FixedPointResult,
    FixedPointSolution as FixedPointSolution,
)
from ._yeast import YeastActivity as YeastActivity
