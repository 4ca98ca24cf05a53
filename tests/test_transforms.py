"""The transform-support table: what the code finds is what the README shows."""

import pathlib
import re

import pytest

from cakejax import _transforms


README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def table():
    return _transforms.table()


def test_readme_table_is_what_the_code_prints(table):
    text = README.read_text()
    match = re.search(r"<!-- transforms -->\n(.*?)\n<!-- /transforms -->", text, re.S)
    assert match, "README.md lacks the transforms table between its markers"
    assert match.group(1).strip() == table


def test_forward_mode_of_the_clip_is_the_only_gap(table):
    rows = table.splitlines()[2:]
    assert len(rows) == len(_transforms.LAYERS)
    for row in rows:
        layer, *cells = [cell.strip() for cell in row.strip("|").split("|")]
        for transform, cell in zip(_transforms.TRANSFORMS, cells, strict=True):
            if layer == "`GradientClip`" and transform in ("jvp", "jacfwd"):
                assert cell == "✗ TypeError"  # a refusal, not a crash
            else:
                assert cell == "✓", (layer, transform, cell)
