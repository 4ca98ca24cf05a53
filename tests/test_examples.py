"""The catalogue of the course's examples: what it says the course printed is what each example
computes, and it sits at the top of the import graph."""

import ast
import pathlib

import numpy as np
import pytest

from cakejax import _course as course, examples
from cakejax.testing import TRANSFORMS

from .helpers import assert_course


SRC = pathlib.Path(examples.__file__).parent
#: The modules above the catalogue: the tour, the transform table, the bake command.
READERS = {"_tour.py", "_transforms.py", "_bake_command.py", "examples.py"}


@pytest.mark.parametrize("name", [n for n, e in examples.EXAMPLES.items() if e.printed is not None])
def test_printed_values_are_what_the_examples_compute(x64, name):
    example = examples.EXAMPLES[name]
    fn, args = example.build()
    assert_course(fn(*args), example.printed)


def test_the_course_inputs():
    np.testing.assert_array_equal(
        examples.cake(), [course.CAKE[k] for k in ("butter", "eggs", "flour", "sugar")]
    )
    assert examples.BUTTER == (True, False, False, False)
    model, features, likes = examples.like_data()
    np.testing.assert_array_equal(features, np.asarray(course.LIKE_FEATURES, features.dtype))
    np.testing.assert_array_equal(likes, course.LIKES)
    assert model.weights.shape == (3,)
    a, b = course.DOUGH_PARAMS
    np.testing.assert_allclose(examples.dough_maturity(course.DOUGH_PARAMS), b / (1 - a), rtol=1e-5)


def test_kinds_and_refusals_are_well_formed():
    assert set(examples.models()) | set(examples.layers()) == set(examples.EXAMPLES)
    for name, example in examples.EXAMPLES.items():
        assert example.refuses <= set(TRANSFORMS), name


def test_nothing_below_the_catalogue_imports_it():
    for path in SRC.rglob("*.py"):
        if path.parent == SRC and path.name in READERS:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [alias.name for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            assert not any(n == "examples" or n.endswith(".examples") for n in names), path
