"""The course's models: Part 1 ("The Basics"), Part 2 ("Advanced Baking"), Part 3
("Exotic Flavors") and Part 4 ("Secret Family Recipes")."""

from ._advanced import (
    CakeProperties as CakeProperties,
    Deliciousness as Deliciousness,
    FluffinessLoss as FluffinessLoss,
    INGREDIENTS as INGREDIENTS,
    ingredients as ingredients,
    PROPERTIES as PROPERTIES,
    SweetnessError as SweetnessError,
)
from ._basics import like_loss as like_loss, LikeModel as LikeModel, Polynomial as Polynomial
from ._exotic import (
    FlavorStability as FlavorStability,
    SmoothMagic as SmoothMagic,
    TrickyMagic as TrickyMagic,
    VibrationScore as VibrationScore,
)
from ._secret import DoughMaturity as DoughMaturity
