"""Custom-derivative layers: YeastActivity (custom_jvp) and GradientClip (custom_vjp). The
implicit FixedPoint layer has its own package, `cakejax.fixed_point`."""

from ._clip import GradientClip as GradientClip
from ._yeast import YeastActivity as YeastActivity
