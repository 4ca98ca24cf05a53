"""Custom-derivative layers: YeastActivity (custom_jvp), GradientClip (custom_vjp), and the
gradient-shaping layers StraightThrough, GradientScale and GradientReversal. The implicit
FixedPoint layer has its own package, `cakejax.fixed_point`."""

from ._clip import GradientClip as GradientClip
from ._reversal import GradientReversal as GradientReversal
from ._scale import GradientScale as GradientScale, scale_gradient as scale_gradient
from ._straight_through import StraightThrough as StraightThrough
from ._yeast import YeastActivity as YeastActivity
