"""What the documentation's executed code blocks share (markdown-exec runs them while
`mkdocs build` renders each page; `hooks.py` puts this folder and the repository root on
`sys.path` first):

- `compare(...)`: the table under each step of the walk-through, what the course printed beside
  what the code block just above it computed with cakejax;
- `start_transform_table()` / `transform_table()`: `python -m cakejax transforms`, run in a
  second process from the start of the build (it is the slowest page: every layer is compiled
  under every transform), so that it uses the second core while the walk-through executes;
- `headline_tables()`, `headline_figure()`, `batch_figure()`, `fixed_point_figure()`: the
  benchmark page, from the committed asv results through `benchmarks/headline.py`'s own
  functions (nothing about reading asv's files is repeated here), drawn with matplotlib as
  inline SVG.

Nothing here is public API; it lives in `docs/` (excluded from the built site).
"""

import ast
import functools
import html
import io
import math
import pathlib
import subprocess
import sys
import tempfile
import textwrap
from typing import Any, NamedTuple

import numpy as np


ROOT = pathlib.Path(__file__).resolve().parents[2]


# --- The walk-through's comparisons ---------------------------------------------------------


class Row(NamedTuple):
    """One comparison: `key` names the row in the HTML (`data-check`), `reference` is what the
    course printed (or, with `source="exact"`, the exact value), `ours` what cakejax computed."""

    key: str
    label: str
    reference: Any
    ours: Any
    source: str = "course"
    note: str = ""


def _format_reference(value: Any) -> str:
    """The course's values as transcribed in `cakejax._course` (Python numbers, digit for
    digit), nested tuples as rows."""
    if isinstance(value, (tuple, list)):
        if value and isinstance(value[0], (tuple, list)):
            return "<br>".join(_format_reference(row) for row in value)
        return "[" + ", ".join(_format_reference(v) for v in value) + "]"
    return html.escape(repr(value))


def _format_ours(value: Any) -> str:
    """cakejax's values as NumPy prints them (float32 shows its own digits)."""
    array = np.asarray(value)
    text = np.array2string(array, precision=8, separator=", ", max_line_width=10_000)
    return "<br>".join(html.escape(line.strip()) for line in text.splitlines())


def agrees(ours: Any, reference: Any) -> bool:
    """The tour's test: same shape, equal within the tolerances of `cakejax._course`."""
    from cakejax import _course

    ours, reference = np.asarray(ours), np.asarray(reference)
    return ours.shape == reference.shape and bool(
        np.allclose(ours, reference, rtol=_course.RTOL, atol=_course.ATOL)
    )


def compare(*rows: Row) -> str:
    """An HTML table, one row per `Row`: the reference, cakejax's value and whether they agree
    (✓ or ✗; a ✗ is shown, not hidden: the tests are what fail)."""
    head = "<tr><th>what</th><th>reference</th><th>cakejax gives</th><th></th></tr>"
    body = []
    for row in rows:
        ok = agrees(row.ours, row.reference)
        source = "the course printed" if row.source == "course" else "exact"
        note = f"<br><small>{html.escape(row.note)}</small>" if row.note else ""
        # The course's numbers as transcribed (digit for digit); exact values as computed.
        reference = (
            _format_reference(row.reference)
            if row.source == "course"
            else _format_ours(row.reference)
        )
        body.append(
            f'<tr data-check="{html.escape(row.key)}">'
            f"<td>{html.escape(row.label)}{note}</td>"
            f'<td class="reference"><small>{source}</small><br>'
            f"<code>{reference}</code></td>"
            f'<td class="ours"><code>{_format_ours(row.ours)}</code></td>'
            f'<td class="agrees">{"✓" if ok else "✗"}</td></tr>'
        )
    return (
        '<div class="md-typeset__table cakejax-compare"><table>'
        f"<thead>{head}</thead><tbody>{''.join(body)}</tbody></table></div>"
    )


# --- The transform table, in a second process -----------------------------------------------


_transform_job: tuple[subprocess.Popen, Any] | None = None  # (the process, its stderr file)


def start_transform_table() -> None:
    """Starts `python -m cakejax transforms` (called by the hook before the pages render)."""
    global _transform_job
    stop_transform_table()
    # stderr to a file, not a pipe: a child that filled an unread pipe would stall.
    errors = tempfile.TemporaryFile(mode="w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "cakejax", "transforms"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
    )
    _transform_job = (process, errors)


def stop_transform_table() -> None:
    """Ends the job if it is still running (a failed or interrupted build)."""
    global _transform_job
    if _transform_job is not None:
        process, errors = _transform_job
        if process.poll() is None:
            process.kill()
        process.communicate()
        errors.close()
    _transform_job = None


def transform_table(timeout: float = 900.0) -> str:
    """The table `python -m cakejax transforms` printed (Markdown), waiting for it if needed;
    run here, in this process, if no job was started (a page rendered on its own)."""
    global _transform_job
    if _transform_job is None:
        from cakejax import _transforms

        return _transforms.table()
    (process, errors), _transform_job = _transform_job, None
    try:
        out, _ = process.communicate(timeout=timeout)
        errors.seek(0)
        if process.returncode != 0:
            raise RuntimeError(
                f"`python -m cakejax transforms` exited with {process.returncode}:\n{errors.read()}"
            )
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        errors.close()
    return out.strip()


# --- Benchmarks -------------------------------------------------------------------------------


def _headline():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from benchmarks import headline

    return headline


@functools.cache
def _results():
    """The CPU and GPU results of the committed machines, read by `benchmarks.headline`."""
    headline = _headline()
    benchmarks = headline.discover()
    directory = ROOT / ".asv" / "results"
    return (
        headline.Results(directory, "cpu-2core-dev", benchmarks),
        headline.Results(directory, "gpu-h100", benchmarks),
    )


@functools.cache
def headline_tables() -> tuple[str, str, str]:
    """(caption, headline table, batch table) in Markdown, exactly as
    `python -m benchmarks.headline` writes them into the README."""
    headline = _headline()
    cpu, gpu = _results()
    table = headline.table({"cpu": cpu, "gpu": gpu})
    batch = headline.batch_table(cpu)
    return headline.caption(cpu), table, batch


def _number(value: Any) -> float | None:
    """A result of `Results.get`: a number, or None where it is missing or stale."""
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def _svg(figure, salt: str) -> str:
    """The figure as inline SVG: text kept as text (small, searchable, the page's font), ids
    salted per figure (several figures share a page), no date (reproducible output)."""
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(figure)
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]  # the XML prologue and doctype are not valid inside HTML
    # Scale with the page: drop the fixed size, keep the viewBox.
    head, rest = svg.split(">", 1)
    head = " ".join(part for part in head.split(" ") if not part.startswith(("width=", "height=")))
    return f'<div class="cakejax-plot">{head} style="width: 100%; height: auto">{rest}</div>'


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


_MET, _MISSED, _NO_TARGET = "#2e7d32", "#c62828", "#607d8b"

#: What a plot shows when no result of the benchmark code as it is now was committed (after a
#: benchmark changed, until the suite is run again): a note, not an empty or failed figure.
_NO_RESULTS = (
    '<div class="cakejax-plot admonition note"><p class="admonition-title">No plot</p>'
    "<p>No committed result of this benchmark's current code (stale or not measured): run "
    "the suite again to draw it.</p></div>"
)


def headline_figure() -> str:
    """Every headline ratio on the CPU, on a log scale, coloured by its target (met, missed,
    or none), the target drawn as a bar; a timed row's interleaved median with its quartiles
    as whiskers."""
    headline = _headline()
    plt = _pyplot()
    cpu, _ = _results()
    labels, ratios, spreads, targets = [], [], [], []
    for row in headline.RATIOS:
        label, (num_name, num), (den_name, den), target, _ = row
        if row in headline.TIMED:
            # The interleaved median and its quartiles.
            median, q1, q3 = (
                _number(cpu.get(name, {"row": label}, "cpu")) for name in headline.INTERLEAVED
            )
            if median is None or q1 is None or q3 is None:
                continue
            ratio, spread = median, (median - q1, q3 - median)
        else:
            a, b = (_number(cpu.get(num_name, num, "cpu")), _number(cpu.get(den_name, den, "cpu")))
            if a is None or b is None or b == 0:
                continue
            ratio, spread = a / b, (0.0, 0.0)
        labels.append(textwrap.fill(label, 70))
        ratios.append(ratio)
        spreads.append(spread)
        targets.append(target)
    if not ratios:
        return _NO_RESULTS
    colours = []
    for ratio, target in zip(ratios, targets, strict=True):
        if target is None:
            colours.append(_NO_TARGET)
        else:
            op, bound = target
            colours.append(_MET if (ratio <= bound if op == "<=" else ratio >= bound) else _MISSED)
    rows = np.arange(len(ratios))[::-1]
    figure, axes = plt.subplots(figsize=(10, 0.42 * len(ratios) + 1))
    axes.scatter(ratios, rows, c=colours, zorder=3, s=28)
    axes.errorbar(
        ratios,
        rows,
        xerr=np.array(spreads).T,
        fmt="none",
        ecolor="black",
        elinewidth=0.8,
        capsize=2,
        zorder=4,
    )
    axes.hlines(rows, 1.0, ratios, colors=colours, lw=1.5, zorder=2)
    for row, target in zip(rows, targets, strict=True):
        if target is not None:
            axes.plot([target[1]] * 2, [row - 0.3, row + 0.3], color="black", lw=1.2, zorder=4)
    axes.axvline(1.0, color="grey", lw=0.8, ls=":")
    axes.set_xscale("log")
    axes.set_yticks(rows, labels, fontsize=8.5)
    axes.set_ylim(-0.7, len(ratios) - 0.3)
    axes.set_xlabel("ratio (log scale; the black bar is the target)")
    axes.set_title("Headline ratios, CPU: green met, red missed, grey no target", fontsize=10)
    axes.grid(axis="x", which="both", alpha=0.3)
    return _svg(figure, "headline")


def batch_figure() -> str:
    """`bench_batch`: for each model, cakejax's time over the course's at N = 1, 10³ and 10⁶
    cakes (the model closed over; the median of the interleaved ratios), one line per
    transform."""
    headline = _headline()
    from benchmarks.bench_batch import PROBLEMS, SIZES, TRANSFORMS

    cpu, _ = _results()
    series: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for model in PROBLEMS:
        for transform in TRANSFORMS:
            points = []
            for n in SIZES:
                common = {"model": model, "transform": transform, "n": n, "mode": "closed"}
                ratio = _number(
                    cpu.get(headline._BATCH_RATIO[0], {**common, "impl": "cakejax"}, "cpu")
                )
                if ratio is not None:
                    points.append((n, ratio))
            if points:
                series.setdefault(model, {})[transform] = points
    if not series:
        return _NO_RESULTS
    plt = _pyplot()
    models = list(PROBLEMS)
    columns = 5
    rows = math.ceil(len(models) / columns)
    figure, grid = plt.subplots(
        rows, columns, figsize=(12, 2.6 * rows), sharex=True, sharey=True, squeeze=False
    )
    markers = dict(zip(TRANSFORMS, "osD^v<>", strict=False))
    legend = {}
    for axes, model in zip(grid.flat, models, strict=False):  # spare axes hidden below
        for transform, points in series.get(model, {}).items():
            (line,) = axes.plot(
                *zip(*points, strict=True), marker=markers.get(transform, "o"), lw=1.2, ms=4
            )
            legend.setdefault(transform, line)
        if model not in series:
            axes.text(
                0.5,
                0.5,
                "not measured",
                ha="center",
                va="center",
                transform=axes.transAxes,
                color="grey",
            )
        axes.axhline(1.0, color="grey", lw=0.8, ls=":")
        axes.set_title(model, fontsize=9)
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.grid(which="both", alpha=0.3)
    for axes in grid.flat[len(models) :]:
        axes.set_visible(False)
    for axes in grid[-1]:
        axes.set_xlabel("cakes N")
    for axes in grid[:, 0]:
        axes.set_ylabel("cakejax / course")
    figure.legend(
        list(legend.values()),
        list(legend),
        loc="upper center",
        ncol=len(legend),
        frameon=False,
        bbox_to_anchor=(0.5, 1.04),
    )
    figure.tight_layout()
    return _svg(figure, "batch")


def fixed_point_figure() -> str:
    """`bench_fixed_point.FixedPointGradient`: forward solve + gradient of a tanh fixed point on
    1000 states, each method's time against the contraction rate ρ."""
    _headline()
    from benchmarks.bench_fixed_point import FIXED_POINT_METHODS, RHOS

    cpu, _ = _results()
    series = {}
    for method in FIXED_POINT_METHODS:
        points = []
        for rho in RHOS:
            value = _number(
                cpu.get(
                    "bench_fixed_point.FixedPointGradient.time_value_and_grad",
                    {"method": method, "n": 1000, "rho": rho},
                    "cpu",
                )
            )
            if value is not None:
                points.append((rho, value * 1e3))
        if points:
            series[method] = points
    if not series:
        return _NO_RESULTS
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 3.6))
    for (method, points), marker in zip(series.items(), "osD^v<>", strict=False):
        xs, ys = zip(*points, strict=True)
        axes.plot([1 - x for x in xs], ys, marker=marker, label=method, lw=1.2, ms=5)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.invert_xaxis()
    axes.set_xticks([1 - rho for rho in RHOS], [f"ρ = {rho}" for rho in RHOS])
    axes.set_xticks([], minor=True)
    axes.set_ylabel("forward + gradient (ms)")
    axes.set_title("FixedPoint on x = tanh(Wx + Uθ), n = 1000, CPU", fontsize=10)
    axes.grid(which="both", alpha=0.3)
    axes.legend(fontsize=8, loc="best")
    return _svg(figure, "fixed-point")


#: The guide's DEQ must reach this test accuracy in its 300 steps, or the site does not build.
DEQ_ACCURACY = 0.96


def deq_training(runs: dict[str, Any]) -> str:
    """The guide's DEQ runs (name -> (model, history of (step, test accuracy, spectral
    radius))) as a Markdown table; raises unless each trained to `DEQ_ACCURACY` with every
    monitored radius below 1 (the page then fails to build)."""
    lines = [
        "| training | test accuracy after 300 steps | largest spectral radius seen |",
        "|---|---|---|",
    ]
    for name, (_, history) in runs.items():
        accuracy, radius = float(history[-1, 1]), float(np.max(history[:, 2]))
        if not (accuracy >= DEQ_ACCURACY and radius < 1):
            raise AssertionError(
                f"the guide's DEQ ({name}) reached a test accuracy of {accuracy:.3f} "
                f"(needs {DEQ_ACCURACY}) with a spectral radius up to {radius:.3f}"
            )
        lines.append(f"| {name} | {accuracy:.1%} | {radius:.2f} |")
    return "\n".join(lines)


def deq_figure(runs: dict[str, Any]) -> str:
    """Test accuracy and the monitored spectral radius against the training step."""
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2))
    for (name, (_, history)), marker in zip(runs.items(), "os", strict=False):
        left.plot(history[:, 0], history[:, 1], marker=marker, ms=3, lw=1.2, label=name)
        right.plot(history[:, 0], history[:, 2], marker=marker, ms=3, lw=1.2, label=name)
    left.axhline(DEQ_ACCURACY, color=_NO_TARGET, lw=0.8, ls="--")
    left.set_ylim(0.8, 1.0)
    left.set_ylabel("test accuracy")
    right.axhline(0.95, color=_MISSED, lw=0.8, ls="--", label="0.95: the edge")
    right.set_ylim(0, 1.05)
    right.set_ylabel("spectral radius at z*")
    for axes in (left, right):
        axes.set_xlabel("training step")
        axes.grid(alpha=0.3)
    right.legend(fontsize=8, loc="center right")
    figure.suptitle("The guide's DEQ on digits, trained as this site was built", fontsize=10)
    return _svg(figure, "deq")


def public_names() -> list[str]:
    """The names `cakejax/__init__.py` exports (its public attributes that are not
    submodules)."""
    import types

    import cakejax

    return sorted(
        name
        for name, value in vars(cakejax).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    )


def _summary(path: pathlib.Path) -> str:
    """The first sentence (or first paragraph, if short) of a Python file's docstring."""
    try:
        docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    except SyntaxError:
        return ""
    paragraph = " ".join(docstring.split("\n\n")[0].split())
    if len(paragraph) > 160:
        # Cut after the first full stop that ends a sentence (outside code spans).
        ticks = 0
        for i, char in enumerate(paragraph):
            ticks += char == "`"
            if (
                char == "."
                and ticks % 2 == 0
                and i > 40
                and (i + 1 == len(paragraph) or paragraph[i + 1] == " ")
            ):
                return paragraph[: i + 1]
    return paragraph


def module_list(folder: str, notes: dict[str, str] | None = None) -> str:
    """A Markdown list of the Python files in `folder` (relative to the repository root), each
    with its docstring's first sentence, or with `notes[name]` where it has none. Read from
    the tree while the site builds, so a new file appears without editing the page."""
    notes = notes or {}
    files = sorted(
        (ROOT / folder).glob("*.py"),
        key=lambda p: (p.name != "__init__.py", p.name.lstrip("_").lower()),
    )
    lines = []
    for path in files:
        text = notes.get(path.name) or _summary(path) or "—"
        lines.append(f"- `{path.name}`: {text}")
    return "\n".join(lines)


def repository_tree(entries: dict[str, str], always: tuple[str, ...] = ()) -> str:
    """A `text` code block, one line per path of `entries` (relative to the repository root)
    that exists, or is in `always`, with its description: the tree as it is, not as it was."""
    shown = {
        path: text for path, text in entries.items() if path in always or (ROOT / path).exists()
    }
    width = max(len(path) for path in shown) + 2
    lines = []
    for path, text in shown.items():
        first, *rest = textwrap.wrap(text, 78 - width) or [""]
        lines.append(f"{path:<{width}}{first}")
        lines += [" " * width + line for line in rest]
    return "```text\n" + "\n".join(lines) + "\n```"


def file_block(path: str, language: str) -> str:
    """The file at `path` (relative to the repository root), as a fenced code block."""
    return f"```{language}\n{(ROOT / path).read_text(encoding='utf-8').rstrip()}\n```"
