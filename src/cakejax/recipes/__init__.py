"""The course's models: Part 1 ("The Basics") and Part 2 ("Advanced Baking")."""

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
