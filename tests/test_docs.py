"""The documentation site builds with `mkdocs build --strict` (no warning), and its pages show
what they claim: numbers computed while it built that agree with the course, every public name
in the API reference with its docstring, the transform table, the benchmark plots, and nothing
loaded from outside the site."""

import ast
import html
import inspect
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

import cakejax as cj
from cakejax import _course as course


# Slow (the site's build runs the walk-through: about a minute): `python -m pytest -m slow`.
pytestmark = pytest.mark.slow


ROOT = pathlib.Path(__file__).resolve().parents[1]

for _module in (
    "mkdocs",
    "material",
    "mkdocstrings",
    "mkdocstrings_handlers.python",
    "markdown_exec",
    "pymdownx",
    "matplotlib",
):
    pytest.importorskip(_module, reason='the docs need it: pip install -e ".[docs]"')


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> pathlib.Path:
    """The site, built once for this module into a temporary folder; or, where
    `CAKEJAX_DOCS_SITE` names a folder, the site `mkdocs build --strict` already built there
    from this checkout (`.ci/run` builds it before the tests and sets it: one build, not two)."""
    built = os.environ.get("CAKEJAX_DOCS_SITE")
    if built:
        assert (pathlib.Path(built) / "index.html").is_file(), f"no site built in {built}"
        return pathlib.Path(built)
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    log = build.stdout + build.stderr
    assert build.returncode == 0, f"mkdocs build --strict failed:\n{log[-6000:]}"
    assert "WARNING" not in log, log[-6000:]
    return out


def _page(site: pathlib.Path, name: str) -> str:
    return (site / name / "index.html").read_text(encoding="utf-8")


def _text(fragment: str) -> str:
    """Visible text of an HTML fragment, whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def _rows(page: str) -> dict[str, tuple[str, str]]:
    """The walk-through's comparison rows: key -> (cakejax's value as shown, the verdict)."""
    rows = {}
    for match in re.finditer(r'<tr data-check="([^"]+)">(.*?)</tr>', page, re.S):
        ours = re.search(r'<td class="ours">(.*?)</td>', match.group(2), re.S).group(1)
        verdict = re.search(r'<td class="agrees">(.*?)</td>', match.group(2), re.S).group(1)
        rows[match.group(1)] = (_text(ours), verdict.strip())
    return rows


def _numbers(text: str) -> np.ndarray:
    return np.asarray([float(x) for x in re.findall(r"[-+]?\d+\.?\d*(?:e[-+]?\d+)?", text)])


def test_walkthrough_shows_the_course_numbers_computed_at_build_time(site):
    page = _page(site, "course/basics")
    rows = _rows(page)
    shown, verdict = rows["like-loss"]
    assert verdict == "✓"
    np.testing.assert_allclose(_numbers(shown), [course.LIKE_LOSS], rtol=course.RTOL)
    # Computed, not typed: cakejax's float32 digits are nowhere in the page's source.
    assert shown not in (ROOT / "docs" / "course" / "basics.md").read_text(encoding="utf-8")
    shown, verdict = rows["like-grad-weights"]
    assert verdict == "✓"
    np.testing.assert_allclose(
        _numbers(shown), course.LIKE_GRAD_WEIGHTS, rtol=course.RTOL, atol=course.ATOL
    )

    advanced = _rows(_page(site, "course/advanced"))
    shown, _ = advanced["hessian"]
    np.testing.assert_allclose(
        _numbers(shown), np.ravel(course.HESSIAN_AT_CAKE), rtol=course.RTOL, atol=course.ATOL
    )
    shown, _ = _rows(_page(site, "course/secret"))["dough-grad"]
    np.testing.assert_allclose(_numbers(shown), course.DOUGH_GRAD, rtol=course.RTOL)


def test_every_comparison_of_every_part_agrees(site):
    expected = {"basics": 5, "advanced": 5, "exotic": 5, "secret": 5, "best-cake": 2}
    for part, at_least in expected.items():
        rows = _rows(_page(site, f"course/{part}"))
        assert len(rows) >= at_least, (part, rows)
        disagree = {key: row for key, row in rows.items() if row[1] != "✓"}
        assert not disagree, (part, disagree)


def _first_paragraph_pieces(docstring: str) -> list[str]:
    """The first paragraph of a docstring, cut at its Markdown and maths markup: the pieces of
    plain text that the rendered page must contain."""
    paragraph = " ".join(docstring.split("\n\n")[0].split())
    return [
        piece.strip()
        for piece in re.split(r"`[^`]*`|\$[^$]*\$|\*\*|[*_]", paragraph)
        if len(piece.strip()) > 12
    ]


def test_api_reference_has_the_docstrings(site):
    page = _text(_page(site, "api/optimise"))
    pieces = _first_paragraph_pieces(inspect.getdoc(cj.optimise_recipe))
    assert pieces
    for piece in pieces:
        assert piece in page, piece
    # Maths in docstrings is left for KaTeX (arithmatex), not mangled by Markdown.
    assert 'class="arithmatex"' in _page(site, "api/fixed-point")


def test_api_reference_has_every_public_name(site):
    pages = "".join(p.read_text(encoding="utf-8") for p in (site / "api").glob("*/index.html"))
    public = [
        name
        for name, value in vars(cj).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    ]
    missing = [name for name in public if f'id="cakejax.{name}"' not in pages]
    assert not missing, f"not in the API reference: {missing}"

    # The public modules: every public name they define at their top level.
    for module, example in (("testing", "check_layer"), ("examples", "EXAMPLES")):
        source = (ROOT / "src" / "cakejax" / f"{module}.py").read_text(encoding="utf-8")
        tree = ast.parse(source)
        names = [
            node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))
        ]
        names += [
            target.id
            for node in tree.body
            if isinstance(node, (ast.Assign, ast.AnnAssign))
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(target, ast.Name)
        ]
        public = [name for name in names if not name.startswith("_")]
        assert example in public
        missing = [name for name in public if f'id="cakejax.{module}.{name}"' not in pages]
        assert not missing, f"cakejax.{module} names not in the API reference: {missing}"


def test_transform_table_has_every_layer(site):
    page = _page(site, "transforms")
    row = re.search(r"<tr>\s*<td><code>YeastActivity</code></td>(.*?)</tr>", page, re.S)
    assert row, "no YeastActivity row in the transform table"
    cells = [_text(cell) for cell in re.findall(r"<td>(.*?)</td>", row.group(1), re.S)]
    assert cells == ["✓"] * len(cj.testing.TRANSFORMS)
    for name in ("GradientClip", "FixedPoint", "StraightThrough(jnp.round)"):
        assert f"<td><code>{html.escape(name)}</code></td>" in page, name


def test_benchmark_page_has_tables_and_plots(site):
    page = _page(site, "benchmarks")
    assert "Measured on" in page and "cpu-2core-dev" in page
    assert "<th>comparison</th>" in page and "<th>target</th>" in page
    # Three plots, each an inline SVG, or a note where no result of a benchmark's current code
    # is committed (a benchmark changed since the suite last ran).
    plots = re.findall(r'<div class="cakejax-plot[^"]*">(<svg|<p class="admonition-title">)', page)
    assert len(plots) == 3, plots
    assert plots[0] == "<svg", "no headline plot"
    # The headline plot labels its rows with the comparisons (text kept as text in the SVG).
    assert "YeastActivity / jax.nn.softplus" in page


def test_guide_trains_its_deep_equilibrium_model(site):
    """Issue 32: the guide's DEQ, trained while the site built (300 steps on digits, kept
    contracting by spectral_normalise, with and without the Jacobian penalty), reached 96 %
    test accuracy with every monitored spectral radius below 1, and its plot is on the page."""
    page = _page(site, "guide")
    text = _text(page)
    rows = re.findall(r"(spectral_normalise|jacobian_penalty \(0\.1\)) (\d+\.\d)% (\d\.\d\d)", text)
    assert len(rows) == 2, rows
    for _, accuracy, radius in rows:
        assert float(accuracy) >= 96 and float(radius) < 1
    assert re.search(r'<div class="cakejax-plot">\s*<svg', page)
    assert "trained as this site was built" in page


def test_layout_page_lists_the_tree(site):
    page = _text(_page(site, "layout"))
    for folder in ("src/cakejax", "src/cakejax/fixed_point", "tests", "benchmarks"):
        for path in (ROOT / folder).glob("*.py"):
            assert path.name in page, path


def test_site_is_self_contained(site):
    assert (site / "_static" / "katex" / "katex.min.js").exists()
    assert not (site / "_scripts").exists(), "the build's helper scripts are not part of the site"
    for path in site.rglob("*.html"):
        text = path.read_text(encoding="utf-8")
        external = re.findall(r'<(?:script|link)\b[^>]*(?:src|href)="(?:https?:)?//[^"]*"', text)
        assert not external, (path, external)
