"""The transform-support table: what the code finds is what the README shows."""

import pathlib
import re

import pytest

from cakejax import _transforms, examples
from cakejax.testing import TRANSFORMS


# Slow (the table tries 12 layers under 7 transforms: about a minute):
# `python -m pytest -m slow`.
pytestmark = pytest.mark.slow


README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def table():
    return _transforms.table()


def test_readme_table_is_what_the_code_prints(table):
    text = README.read_text()
    match = re.search(r"<!-- transforms -->\n(.*?)\n<!-- /transforms -->", text, re.S)
    assert match, "README.md lacks the transforms table between its markers"
    assert match.group(1).strip() == table


def test_every_layer_works_but_where_it_refuses_by_design(table):
    # Where the catalogue says a layer refuses (the clip's forward mode), a clear TypeError,
    # not a crash; everywhere else it works.
    rows = table.splitlines()[2:]
    layers = examples.layers()
    assert len(rows) == len(layers)
    for row, (name, example) in zip(rows, layers.items(), strict=True):
        layer, *cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert layer == f"`{name}`"
        for transform, cell in zip(TRANSFORMS, cells, strict=True):
            expected = "✗ TypeError" if transform in example.refuses else "✓"
            assert cell == expected, (name, transform, cell)
