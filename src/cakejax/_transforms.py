"""`python -m cakejax transforms`: every layer of the catalogue (`cakejax.examples`) tried
under every transform, by the same code that checks a user's layer
(`cakejax.testing.check_transforms`)."""

from .examples import layers
from .testing import check_transforms, transform_table


def table() -> str:
    """The transform-support table, in Markdown: a row per layer of `examples.layers()`."""
    rows = {}
    for name, example in layers().items():
        layer, args = example.build()
        rows[name] = check_transforms(layer, *args)
    return transform_table(rows)
