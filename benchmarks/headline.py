"""`python -m benchmarks.headline`: the README's table of headline ratios, computed from the
asv results of one machine, never typed by hand. Each benchmark is read from the newest run
that measured it (a run of part of the suite, `asv run --bench ...`, updates only its rows),
and the caption names the commits the rows come from.

Only results of the benchmark code as it is now count: asv stores with each result the version
(a hash of the benchmark's source) it was measured with, and a result whose version differs from
the code's is refused (its cell says "stale") rather than reported under a name that now means
something else. The names, parameters and versions come from asv's own discovery of
`benchmarks/`, not from `.asv/results/benchmarks.json` (which `asv run` rewrites, so it is not
tracked).

CPU results come from `--machine`, GPU results from `--gpu-machine` (a machine name of their
own, as asv keeps them); a column with no results says so.

`--write-readme` replaces the tables between the `<!-- headline -->` and `<!-- batch -->`
markers of README.md.
"""

import argparse
import itertools
import json
import math
import pathlib
import platform
import typing
from importlib import metadata


ROOT = pathlib.Path(__file__).resolve().parents[1]


class Row(typing.NamedTuple):
    """A headline row: `numerator` over `denominator`, each a (benchmark, parameters) (the
    backend is added per column), its target as (comparison, bound) or None, and `slower`,
    the way the ratio moves when cakejax gets slower: "up" where cakejax's program is the
    numerator, "down" where it is the denominator."""

    label: str
    numerator: tuple[str, dict]
    denominator: tuple[str, dict]
    target: tuple[str, float] | None
    slower: str


def _ratio(label, benchmark, numerator, denominator, target=None, slower=None, **common):
    """One row: `benchmark` at `numerator`'s parameters over the same benchmark at
    `denominator`'s (both with `common`). `slower` defaults to what the target says (a bound
    from above: "up")."""
    if slower is None:
        slower = "down" if target is not None and target[0] == ">=" else "up"
    return Row(
        label,
        (benchmark, {**common, **numerator}),
        (benchmark, {**common, **denominator}),
        target,
        slower,
    )


_AGAINST = "bench_baseline.AgainstCourse."
_CAKEJAX, _COURSE = {"impl": "cakejax"}, {"impl": "course"}
_FIXED_POINT = "bench_fixed_point.FixedPointGradient."
_OURS = {"method": "cakejax"}
_DEQ = "bench_fixed_point.DEQDigits."
_DEQ_STEP = "bench_fixed_point._DEQTrainStep.time_train_step"


def _fixed_point_rows():
    rows = []
    for rho in (0.9, 0.99, 0.999):
        rows.append(
            _ratio(
                f"FixedPoint forward + gradient, n = 1000, ρ = {rho}: cakejax / optimistix + GMRES",
                _FIXED_POINT + "time_value_and_grad",
                _OURS,
                {"method": "optimistix+GMRES"},
                ("<=", 0.5),
                n=1000,
                rho=rho,
            )
        )
    rows.append(
        _ratio(
            "FixedPoint forward + gradient, n = 1000, ρ = 0.9: optimistix (default "
            "ImplicitAdjoint) / cakejax",
            _FIXED_POINT + "time_value_and_grad",
            {"method": "optimistix"},
            _OURS,
            (">=", 10.0),
            n=1000,
            rho=0.9,
        )
    )
    rows.append(
        _ratio(
            "FixedPoint forward + gradient, n = 1000, ρ = 0.9: cakejax Picard / cakejax (Anderson)",
            _FIXED_POINT + "time_value_and_grad",
            {"method": "cakejax Picard"},
            _OURS,
            n=1000,
            rho=0.9,
            slower="down",
        )
    )
    rows.append(
        _ratio(
            "FixedPoint forward + gradient, n = 1000, ρ = 0.5: unrolled loop / cakejax",
            _FIXED_POINT + "time_value_and_grad",
            {"method": "unrolled"},
            _OURS,
            n=1000,
            rho=0.5,
            slower="down",
        )
    )
    rows.append(
        _ratio(
            "FixedPoint forward + gradient, n = 1000, ρ = 0.9, compile time: cakejax / optimistix",
            "bench_fixed_point._FixedPointCompile.time_compile",
            _OURS,
            {"method": "optimistix"},
            ("<=", 1.0),
            n=1000,
            rho=0.9,
        )
    )
    rows.append(
        _ratio(
            "FixedPoint forward steps, n = 1000, ρ = 0.99 (deterministic): Anderson / Picard",
            "bench_fixed_point.ForwardSteps.track_steps",
            {"solver": "Anderson"},
            {"solver": "Picard"},
            ("<=", 0.2),
            n=1000,
            rho=0.99,
        )
    )
    # The DEQ on digits (64 units, after training): a train step at most half optimistix's,
    # the defaults' and the dense adjoint's, timed at the weights the defaults trained.
    for impl in ("cakejax", "cakejax dense"):
        rows.append(
            _ratio(
                f"DEQ on digits, train step, 64 units, after 300 steps: {impl} / optimistix",
                _DEQ_STEP,
                {"impl": impl},
                {"impl": "optimistix"},
                ("<=", 0.5),
                hidden=64,
                weights="trained",
            )
        )
    for hidden in (64, 128):
        for weights in ("init", "trained"):
            when = "at initialisation" if weights == "init" else "after 300 steps"
            common = {"hidden": hidden, "weights": weights}
            rows.append(
                _ratio(
                    f"DEQ train step, {hidden} units, {when}: cakejax defaults / hand-written",
                    _DEQ_STEP,
                    _CAKEJAX,
                    {"impl": "hand-written"},
                    ("<=", 2.0),
                    **common,
                )
            )
            if (hidden, weights) != (64, "trained"):  # that one is above, with its target
                rows.append(
                    _ratio(
                        f"DEQ train step, {hidden} units, {when}: cakejax defaults / optimistix",
                        _DEQ_STEP,
                        _CAKEJAX,
                        {"impl": "optimistix"},
                        **common,
                    )
                )
            for setting in ("cakejax Picard+Neumann", "cakejax Picard", "cakejax dense"):
                rows.append(
                    _ratio(
                        f"DEQ train step, {hidden} units, {when}: {setting} / cakejax defaults",
                        _DEQ_STEP,
                        {"impl": setting},
                        _CAKEJAX,
                        (">=", 0.91),
                        **common,
                    )
                )
    rows.append(
        _ratio(
            "DEQ train step, first call (trace + compile): cakejax defaults / optimistix",
            "bench_fixed_point._DEQFirstCall.time_compile_train_step",
            _CAKEJAX,
            {"impl": "optimistix"},
            ("<=", 1.0),
        )
    )
    rows.append(
        _ratio(
            "DEQ on digits, train step compile time: cakejax dense / optimistix",
            "bench_fixed_point._DEQCompile.time_compile_train_step",
            {"impl": "cakejax dense"},
            {"impl": "optimistix"},
            ("<=", 1.0),
        )
    )
    for n, label in ((1000, "10³"), (1000000, "10⁶")):
        for transform in ("value", "grad"):
            rows.append(
                _ratio(
                    f"Dough maturity under vmap, N = {label}, {transform}: cakejax defaults "
                    "/ course",
                    "bench_fixed_point.DoughBatch.time_steady_state",
                    {"method": "defaults"},
                    {"method": "course"},
                    ("<=", 1.5),
                    transform=transform,
                    n=n,
                )
            )
    for transform in ("value", "grad"):
        rows.append(
            _ratio(
                f"Dough maturity under vmap, N = 10³, {transform}, first compile: cakejax "
                "defaults / course",
                "bench_fixed_point._DoughBatchCompile.time_compile",
                {"method": "defaults"},
                {"method": "course"},
                ("<=", 2.0),
                transform=transform,
                n=1000,
            )
        )
    rows.append(
        _ratio(
            "DEQ on digits, test accuracy after 200 steps: cakejax / optimistix",
            _DEQ + "track_test_accuracy",
            {"impl": "cakejax"},
            {"impl": "optimistix"},
            (">=", 0.99),
        )
    )
    return rows


def _contraction_rows():
    """Issue 32: what keeping a DEQ contracting costs, its accuracy, and the monitor."""
    step = "bench_fixed_point._DEQContraction.time_train_step"
    return [
        _ratio(
            "DEQ train step, W through spectral_normalise / W as it is",
            step,
            {"setting": "spectral_normalise"},
            {"setting": "none"},
            ("<=", 1.1),
        ),
        _ratio(
            "DEQ train step, with jacobian_penalty (one probe) / without",
            step,
            {"setting": "jacobian_penalty"},
            {"setting": "none"},
            ("<=", 1.3),
        ),
        _ratio(
            "DEQ kept contracting by spectral_normalise, test accuracy after 300 steps: "
            "cakejax / optimistix",
            "bench_fixed_point.DEQContractionAccuracy.track_test_accuracy",
            {"impl": "cakejax"},
            {"impl": "optimistix"},
            (">=", 1.0),
        ),
        *(
            _ratio(
                f"spectral_radius (20 Arnoldi steps), n = {n}: cakejax / dense eigvals",
                "bench_spectral._SpectralRadius.time_radius",
                {"method": "arnoldi"},
                {"method": "eigvals"},
                n=n,
            )
            for n in (64, 1000)
        ),
    ]


def _batch_rows():
    """The N = 10⁶ rows of `bench_batch` for the models with a course peer in the old rows."""
    rows = []
    for model in ("Deliciousness", "LikeModel"):
        for transform in ("value", "grad", "hessian"):
            for mode, den in (("closed", "closed"), ("argument", "closed")):
                rows.append(
                    _ratio(
                        f"{model} {transform}, N = 10⁶ cakes, model {_MODES[mode]}: "
                        "cakejax / course",
                        _BATCH,
                        {"impl": "cakejax", "mode": mode},
                        {"impl": "course", "mode": den},
                        ("<=", 1.05),
                        model=model,
                        transform=transform,
                        n=1000000,
                    )
                )
    for transform in ("value", "grad"):
        for on_error in ("raise", "nan"):
            rows.append(
                _ratio(
                    f"Deliciousness {transform}, N = 10⁶, EQX_ON_ERROR={on_error}: "
                    "cakejax / course",
                    "bench_batch._DomainCheck.time_steady_state",
                    {"on_error": on_error},
                    {"on_error": "course"},
                    ("<=", 1.05),
                    transform=transform,
                )
            )
    return rows


_BATCH = "bench_batch._BatchProgram.time_steady_state"
_PER_DEVICE = "bench_bake.RecipesPerDevice.track_speedup"
_MODES = {"closed": "closed over", "argument": "as a jit argument"}


RATIOS = [
    _ratio(
        "Deliciousness, jitted, model closed over: cakejax / course",
        _AGAINST + "time_closed_over",
        _CAKEJAX,
        _COURSE,
        ("<=", 1.05),
        problem="Deliciousness",
    ),
    _ratio(
        "LikeModel loss, jitted, model closed over: cakejax / course",
        _AGAINST + "time_closed_over",
        _CAKEJAX,
        _COURSE,
        ("<=", 1.05),
        problem="LikeModel",
    ),
    _ratio(
        "Deliciousness, compile time: cakejax / course",
        _AGAINST + "time_compile",
        _CAKEJAX,
        _COURSE,
        ("<=", 1.2),
        problem="Deliciousness",
    ),
    _ratio(
        "LikeModel loss, compile time: cakejax / course",
        _AGAINST + "time_compile",
        _CAKEJAX,
        _COURSE,
        ("<=", 1.2),
        problem="LikeModel",
    ),
    _ratio(
        "Deliciousness, model as a jit argument: cakejax / course",
        _AGAINST + "time_as_jit_argument",
        _CAKEJAX,
        _COURSE,
        ("<=", 1.25),
        problem="Deliciousness",
    ),
    _ratio(
        "LikeModel loss, model as a jit argument: cakejax / course",
        _AGAINST + "time_as_jit_argument",
        _CAKEJAX,
        _COURSE,
        ("<=", 1.25),
        problem="LikeModel",
    ),
    _ratio(
        "Deliciousness gradient, closed over: cakejax / course",
        _AGAINST + "time_grad_closed_over",
        _CAKEJAX,
        _COURSE,
        problem="Deliciousness",
    ),
    _ratio(
        "dispatch of a model argument: eqx.filter_jit / jax.jit",
        "bench_baseline.Dispatch.time_call",
        {"jit": "eqx.filter_jit"},
        {"jit": "jax.jit"},
    ),
    _ratio(
        "YeastActivity / jax.nn.softplus, forward, n = 10⁶",
        "bench_layers.Softplus.time_steady_state",
        {"impl": "YeastActivity"},
        {"impl": "jax.nn.softplus"},
        ("<=", 1.05),
        n=1000000,
        transform="forward",
    ),
    _ratio(
        "YeastActivity / jax.nn.softplus, gradient, n = 10⁶",
        "bench_layers.Softplus.time_steady_state",
        {"impl": "YeastActivity"},
        {"impl": "jax.nn.softplus"},
        ("<=", 1.05),
        n=1000000,
        transform="grad",
    ),
    _ratio(
        "YeastActivity / jax.nn.softplus in eqx.nn.MLP(1, 1, 32, 2), forward, B = 4096",
        "bench_layers.MLP.time_steady_state",
        {"impl": "YeastActivity"},
        {"impl": "jax.nn.softplus"},
        ("<=", 1.05),
        batch=4096,
        transform="forward",
    ),
    _ratio(
        "YeastActivity / jax.nn.softplus in eqx.nn.MLP(1, 1, 32, 2), train step, B = 4096",
        "bench_layers.MLP.time_steady_state",
        {"impl": "YeastActivity"},
        {"impl": "jax.nn.softplus"},
        ("<=", 1.05),
        batch=4096,
        transform="train step",
    ),
    _ratio(
        "the same train step with beta frozen (no beta gradient) / jax.nn.softplus",
        "bench_layers.MLP.time_steady_state",
        {"impl": "YeastActivity, beta frozen"},
        {"impl": "jax.nn.softplus"},
        batch=4096,
        transform="train step",
    ),
    _ratio(
        "YeastActivity / jax.nn.softplus in eqx.nn.MLP(1, 1, 32, 2), train step, B = 256",
        "bench_layers.MLP.time_steady_state",
        {"impl": "YeastActivity"},
        {"impl": "jax.nn.softplus"},
        ("<=", 1.05),
        batch=256,
        transform="train step",
    ),
    _ratio(
        "recipes: time for 10⁴ customers / time for 10 (1000× the customers)",
        "bench_bake.Recipes.time_steady_state",
        {"customers": 10_000},
        {"customers": 10},
    ),
    _ratio(
        "recipes for 4096 customers, customers/s: 8 virtual CPU devices / 1",
        _PER_DEVICE,
        {"devices": 8},
        {"devices": 1},
        (">=", 0.9),
    ),
    _ratio(
        "the same, 2 devices / 1",
        _PER_DEVICE,
        {"devices": 2},
        {"devices": 1},
        (">=", 0.9),
    ),
    _ratio(
        "the same, 4 devices / 1",
        _PER_DEVICE,
        {"devices": 4},
        {"devices": 1},
        (">=", 0.9),
    ),
    _ratio(
        "Deliciousness forward with / without GradientClip",
        "bench_layers.Clip.time_steady_state",
        {"impl": "with GradientClip"},
        {"impl": "without"},
        ("<=", 1.05),
        transform="forward",
    ),
    _ratio(
        "Deliciousness forward, XLA flops (deterministic): with / without GradientClip",
        "bench_layers.ClipCost.track_flops",
        {"impl": "with GradientClip"},
        {"impl": "without"},
        ("<=", 1.0),
        transform="forward",
    ),
    *_batch_rows(),
    *_fixed_point_rows(),
    *_contraction_rows(),
    _ratio(
        "hvp / grad, d = 4096",
        "bench_scaling.HvpVsGrad.time_steady_state",
        {"method": "hvp"},
        {"method": "grad"},
        ("<=", 1.5),
        d=4096,
    ),
    _ratio(
        "full Hessian, d = 1024: jax.hessian / vmap(hvp)",
        "bench_scaling.Hessian.time_steady_state",
        {"method": "jax.hessian"},
        {"method": "vmap(hvp)"},
        d=1024,
        slower="down",
    ),
    _ratio(
        "256 per-customer gradients: Python loop / vmap",
        "bench_scaling.PerExample.time_gradients",
        {"method": "loop"},
        {"method": "vmap"},
        batch=256,
        slower="down",
    ),
    _ratio(
        "cold start (import, trace, compile, call): type checks on / off",
        "bench_baseline._ColdStart.timeraw_import_trace_compile_call",
        {"typecheck": "on"},
        {"typecheck": "off"},
    ),
]


#: The rows timed by their benchmarks (the rest track deterministic numbers: accuracy, flops,
#: solver steps; and the speedup over one device, measured in a process of its own):
#: `bench_headline.Ratios` measures each interleaved in one process.
TIMED = [row for row in RATIOS if ".track_" not in row.numerator[0]]

#: The interleaved ratio of a timed row and its quartiles (`bench_headline`).
INTERLEAVED = tuple(f"bench_headline.Ratios.track_ratio{suffix}" for suffix in ("", "_q1", "_q3"))

#: Rows measured interleaved by their own benchmark, in a process of their own (the device
#: count is fixed when JAX starts): the track of the numerator's ratio to the denominator ->
#: the tracks of that ratio and its quartiles.
SPREADS = {_PER_DEVICE: tuple(f"{_PER_DEVICE}{suffix}" for suffix in ("", "_q1", "_q3"))}

#: A row whose interquartile range is wider than this, relative to its median, is
#: noise-limited: a change within its spread cannot be told from the machine's noise.
NOISY = 0.1

STALE = "stale"


def discover() -> dict[str, tuple[str, list[str]]]:
    """Every benchmark of `benchmarks/` as asv sees it: name -> (version, parameter names)."""
    from asv_runner.discovery import disc_benchmarks

    return {
        b.name: (b.version, list(b.param_names)) for b in disc_benchmarks(str(ROOT / "benchmarks"))
    }


class Results:
    """The asv results of one machine, in the environment the table is written from; each
    benchmark from the newest run that measured it with the code's current version of it."""

    def __init__(self, results_dir: pathlib.Path, machine: str, benchmarks: dict):
        runs = [
            json.loads(p.read_text())
            for p in (results_dir / machine).glob("*.json")
            if p.name != "machine.json"
        ]
        # Runs of `asv run --python=same` only: the dashboard's history (each commit built in
        # its own virtualenv, for each JAX of the matrix) shares the machine's folder.
        self.runs = sorted(
            (r for r in runs if r["env_name"].startswith("existing")),
            key=lambda d: d["date"],
            reverse=True,
        )
        self.benchmarks = benchmarks
        machine_file = results_dir / machine / "machine.json"
        self.machine = json.loads(machine_file.read_text()) if machine_file.exists() else {}
        self.commits: set[str] = set()

    def _values(self, benchmark: str, params: dict, backend: str):
        """(value, commit) of each run that measured `params` on `backend` with the code's
        version of `benchmark`, newest first (the value None where that run's entry lacks
        it); `STALE` first where only another version did."""
        if benchmark not in self.benchmarks:
            return
        version, names = self.benchmarks[benchmark]
        if "backend" in names:
            params = {**params, "backend": backend}
        elif backend != "cpu":
            return
        wanted = [
            repr(params[name]) if isinstance(params[name], str) else str(params[name])
            for name in names
        ]
        stale = False
        for run in self.runs:
            entry = run["results"].get(benchmark)
            if entry is None:
                continue
            columns = run["result_columns"]
            if entry[columns.index("version")] != version:
                stale = True
                continue
            grid = entry[columns.index("params")]
            value = None
            for combo, result in zip(
                itertools.product(*grid), entry[columns.index("result")] or [], strict=False
            ):
                if list(combo) == wanted:
                    value = result if result is not None and not math.isnan(result) else None
                    break
            yield value, run["commit_hash"][:8]
        if stale:
            yield STALE, None

    def get(self, benchmark: str, params: dict, backend: str):
        """The result at `params` on `backend`: a number, None (not measured), or `STALE` (only
        measured by another version of the benchmark). A benchmark without a backend parameter
        (the cold start, always on CPU) counts as a CPU result. It comes from the newest run
        that measured the benchmark."""
        for value, commit in self._values(benchmark, params, backend):
            if commit is not None and value is not None:
                self.commits.add(commit)
            return value
        return None

    def previous(self, benchmark: str, params: dict, backend: str):
        """(value, commit) of the run before the one `get` reads that measured `params` with
        the same version of the benchmark, or None."""
        values = self._values(benchmark, params, backend)
        next(values, None)
        for value, commit in values:
            if value is not None and value != STALE:
                return value, commit
        return None


def _cell(a, b, target=None) -> str:
    if a is None or b is None:
        return "no peer result" if a not in (None, STALE) else "not measured"
    if STALE in (a, b):
        return "stale (re-run)"
    ratio = a / b
    mark = ""
    if target is not None:
        op, bound = target
        mark = " ✓" if (ratio <= bound if op == "<=" else ratio >= bound) else " ✗"
    return f"{ratio:.2f}×{mark}"


def _interleaved(results: "Results", label: str, backend: str, target) -> str:
    """A timed row's cell: the median of its interleaved ratios with their quartiles."""
    return _spread(results, INTERLEAVED, {"row": label}, backend, target)


def _spread(results: "Results", names, params: dict, backend: str, target) -> str:
    """The cell of an interleaved ratio: its median, read from the benchmark `names[0]`, with
    its quartiles (`names[1:]`), marked noise-limited where their range is wide or where the
    previous run of the same benchmark code disagrees by more than `NOISY`."""
    median, q1, q3 = (results.get(name, params, backend) for name in names)
    if STALE in (median, q1, q3):
        return "stale (re-run)"
    if None in (median, q1, q3):
        return "not measured"
    cell = _cell(median, 1.0, target).replace("×", f"× ({q1:.2f}–{q3:.2f})", 1)
    if (q3 - q1) / median > NOISY:
        return cell + " noise-limited"
    # Quartiles measure the noise within one process; a shift between processes shows as a
    # disagreement with the previous run of the same benchmark code.
    previous = results.previous(names[0], params, backend)
    if previous is not None and abs(median / previous[0] - 1) > NOISY:
        return cell + f" noise-limited (previous run {previous[0]:.2f}× at {previous[1]})"
    return cell


def _goal(target) -> str:
    return "" if target is None else f"{ {'<=': '≤', '>=': '≥'}[target[0]] } {target[1]}"


def _roofline(results: Results, label: str, backend: str) -> str:
    """cakejax's program of a timed row against the machine's roofs: its fraction of the
    tighter roof (`bench_headline.Ratios`), and which roof that is."""
    fraction = results.get(_PROGRAM + "track_roofline", {"row": label}, backend)
    intensity = results.get(_PROGRAM + "track_flops_per_byte", {"row": label}, backend)
    roofs = [results.get(_MACHINE + name, {}, backend) for name in _ROOFS]
    if STALE in (fraction, intensity, *roofs):
        return "stale (re-run)"
    if fraction is None or intensity is None or None in roofs:
        return "–"
    bandwidth, peak = roofs
    share = f"{100 * fraction:.0f} %" if fraction >= 0.1 else f"{100 * fraction:.2g} %"
    if intensity > peak / bandwidth:
        return f"{share} compute"
    # XLA counts the bytes each operation touches; a working set that stays in cache moves
    # them faster than the memory roof (a STREAM triad far beyond any cache).
    return f"{share} memory" + (" (in cache)" if fraction > 1 else "")


def _program(results: Results, label: str, backend: str) -> str:
    """The first 8 hex digits of the fingerprint of cakejax's program of a timed row."""
    value = results.get(_PROGRAM + "track_program_fingerprint", {"row": label}, backend)
    if value == STALE:
        return "stale (re-run)"
    if value is None:
        return "–"
    return f"`{int(value):013x}"[:9] + "`"


_PROGRAM = "bench_headline.Ratios."
_MACHINE = "bench_headline.Machine."
_ROOFS = ("track_memory_bandwidth", "track_peak_flops")


def table(columns: dict[str, Results]) -> str:
    """The headline ratios, one column per backend (each read from its own machine's
    results): a timed row's interleaved median with its quartiles, a deterministic one's
    quotient. For each backend with results, cakejax's program of each timed row against
    the roofline, and its fingerprint."""
    measured = [backend for backend, r in columns.items() if r.runs]
    head = [*columns, *(f"roofline, {b}" for b in measured), *(f"program, {b}" for b in measured)]
    lines = [
        "| comparison | target | " + " | ".join(head) + " |",
        "|---|---|" + "---|" * len(head),
    ]
    for row in RATIOS:
        label, (num_name, num), (den_name, den), target, _ = row
        timed = row in TIMED
        cells = [
            _interleaved(r, label, backend, target)
            if timed
            else _spread(r, SPREADS[num_name], num, backend, target)
            if num_name in SPREADS
            else _cell(r.get(num_name, num, backend), r.get(den_name, den, backend), target)
            for backend, r in columns.items()
        ]
        cells += [_roofline(columns[b], label, b) if timed else "–" for b in measured]
        cells += [_program(columns[b], label, b) if timed else "–" for b in measured]
        lines.append(f"| {label} | {_goal(target)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: bench_batch's (N, mode) columns and the targets the issue set for them.
_BATCH_COLUMNS = [
    (1, "closed", 1.25),
    (1, "argument", 1.25),
    (1000, "closed", None),
    (1000000, "closed", 1.05),
    (1000000, "argument", 1.05),
]


def batch_table(results: Results, backend: str = "cpu") -> str:
    """Every model against the course at each batch size: the interleaved time ratios
    cakejax / course with their quartiles (the course's function is always closed over: it
    has no parameters), the temporary memory ratio at N = 10⁶, and cakejax's throughput there
    in cakes per second."""
    from .bench_batch import PROBLEMS, TRANSFORMS

    head = (
        ["model", "transform"]
        + [f"N = {n:,} {'closed' if mode == 'closed' else 'arg'}" for n, mode, _ in _BATCH_COLUMNS]
        + ["temp memory, N = 10⁶ (course)", "cakes / s, N = 10⁶ (course)"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model in PROBLEMS:
        for transform in TRANSFORMS:
            common = {"model": model, "transform": transform}
            cells = [
                _spread(
                    results,
                    _BATCH_RATIO,
                    {**common, "n": n, "impl": "cakejax", "mode": mode},
                    backend,
                    None if bound is None else ("<=", bound),
                )
                for n, mode, bound in _BATCH_COLUMNS
            ]
            big = {**common, "n": 1000000, "mode": "closed"}
            temp = [
                results.get(
                    "bench_batch.BatchCost.track_temp_bytes", {**big, "impl": impl}, backend
                )
                for impl in ("cakejax", "course")
            ]
            cells.append(
                "not measured"
                if None in temp or STALE in temp
                else f"{temp[0] / 1e6:.3g} MB ({temp[1] / 1e6:.3g})"
                f"{' ✓' if temp[0] <= temp[1] else ' ✗'}"
            )
            times = [
                results.get(_BATCH_SECONDS, {**big, "impl": impl}, backend)
                for impl in ("cakejax", "course")
            ]
            cells.append(
                "not measured"
                if None in times or STALE in times
                else f"{1e6 / times[0]:.3g} ({1e6 / times[1]:.3g})"
            )
            lines.append(f"| {model} | {transform} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: `bench_batch`'s tracks: a program's median time, and the interleaved ratio cakejax /
#: course with its quartiles.
_BATCH_SECONDS = "bench_batch.Batch.track_seconds"
_BATCH_RATIO = tuple(f"bench_batch.BatchRatio.track_ratio{suffix}" for suffix in ("", "_q1", "_q3"))


def caption(results: Results) -> str:
    """The machine (from the results) and the versions installed where the table is written
    (run it in the environment that `asv run --python=same` measured)."""
    m = results.machine
    packages = ("jax", "jaxlib", "equinox", "jaxtyping", "beartype", "optimistix", "lineax")
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in packages)
    return (
        f"Measured on `{m.get('machine')}` ({m.get('cpu', '?')}, {m.get('num_cpu', '?')} "
        f"cores, {m.get('ram', '?')} RAM, {m.get('os', '?')}) at commits "
        f"{', '.join(sorted(results.commits))} (each row from the newest run that measured "
        f"it), Python {platform.python_version()}, {versions}."
    )


def _replace(text: str, marker: str, block: str) -> str:
    before, rest = text.split(f"<!-- {marker} -->\n", 1)
    _, after = rest.split(f"<!-- /{marker} -->", 1)
    return f"{before}<!-- {marker} -->\n{block}\n<!-- /{marker} -->{after}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machine", default="cpu-2core-dev")
    parser.add_argument("--gpu-machine", default="gpu-h100")
    parser.add_argument("--results", type=pathlib.Path, default=ROOT / ".asv" / "results")
    parser.add_argument("--write-readme", action="store_true")
    args = parser.parse_args(argv)
    benchmarks = discover()
    cpu = Results(args.results, args.machine, benchmarks)
    if not cpu.runs:
        raise SystemExit(f"no asv results for machine {args.machine!r} in {args.results}")
    gpu = Results(args.results, args.gpu_machine, benchmarks)
    # The tables first: they record which runs their cells come from.
    headline = f"{table({'cpu': cpu, 'gpu': gpu})}"
    batch = batch_table(cpu)
    text = f"{caption(cpu)}\n\n{headline}"
    if args.write_readme:
        readme = ROOT / "README.md"
        readme.write_text(_replace(_replace(readme.read_text(), "headline", text), "batch", batch))
    print(text, batch, sep="\n\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
