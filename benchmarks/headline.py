"""`python -m benchmarks.headline`: the README's table of headline ratios, computed from the
asv results of one machine, never typed by hand. Each benchmark is read from the newest run
that measured it (a run of part of the suite, `asv run --bench ...`, updates only its rows),
and the caption names the commits the rows come from.

`--write-readme` replaces the table between the `<!-- headline -->` markers of README.md.
"""

import argparse
import itertools
import json
import math
import pathlib
import platform
from importlib import metadata


ROOT = pathlib.Path(__file__).resolve().parents[1]

def _ratio(label, benchmark, numerator, denominator, target=None, **common):
    """One row: `benchmark` at `numerator`'s parameters over the same benchmark at
    `denominator`'s (both with `common`), and its target as (comparison, bound) or None. The
    backend is added per column."""
    return (label, (benchmark, {**common, **numerator}), (benchmark, {**common, **denominator}),
            target)


_AGAINST = "bench_baseline.AgainstCourse."
_CAKEJAX, _COURSE = {"impl": "cakejax"}, {"impl": "course"}
_FIXED_POINT = "bench_fixed_point.FixedPointGradient."
_OURS = {"method": "cakejax"}
_DEQ = "bench_fixed_point.DEQDigits."


def _fixed_point_rows():
    rows = []
    for rho in (0.9, 0.99, 0.999):
        rows.append(_ratio(f"FixedPoint forward + gradient, n = 1000, ρ = {rho}: cakejax / "
                           "optimistix + GMRES", _FIXED_POINT + "time_value_and_grad", _OURS,
                           {"method": "optimistix+GMRES"}, ("<=", 0.5), n=1000, rho=rho))
    rows.append(_ratio("FixedPoint forward + gradient, n = 1000, ρ = 0.9: optimistix (default "
                       "ImplicitAdjoint) / cakejax", _FIXED_POINT + "time_value_and_grad",
                       {"method": "optimistix"}, _OURS, (">=", 10.0), n=1000, rho=0.9))
    rows.append(_ratio("FixedPoint forward + gradient, n = 1000, ρ = 0.9: cakejax Picard / "
                       "cakejax (Anderson)", _FIXED_POINT + "time_value_and_grad",
                       {"method": "cakejax Picard"}, _OURS, n=1000, rho=0.9))
    rows.append(_ratio("FixedPoint forward + gradient, n = 1000, ρ = 0.5: unrolled loop / "
                       "cakejax", _FIXED_POINT + "time_value_and_grad", {"method": "unrolled"},
                       _OURS, n=1000, rho=0.5))
    rows.append(_ratio("FixedPoint forward + gradient, n = 1000, ρ = 0.9, compile time: "
                       "cakejax / optimistix", _FIXED_POINT + "time_compile", _OURS,
                       {"method": "optimistix"}, ("<=", 1.0), n=1000, rho=0.9))
    rows.append(_ratio("FixedPoint forward steps, n = 1000, ρ = 0.99 (deterministic): Anderson "
                       "/ Picard", "bench_fixed_point.ForwardSteps.track_steps",
                       {"solver": "Anderson"}, {"solver": "Picard"}, ("<=", 0.2), n=1000,
                       rho=0.99))
    for impl in ("cakejax", "cakejax dense"):
        rows.append(_ratio(f"DEQ on digits, train step: {impl} / optimistix",
                           _DEQ + "time_train_step", {"impl": impl}, {"impl": "optimistix"},
                           ("<=", 0.5)))
    rows.append(_ratio("DEQ on digits, train step compile time: cakejax dense / optimistix",
                       _DEQ + "time_compile_train_step", {"impl": "cakejax dense"},
                       {"impl": "optimistix"}, ("<=", 1.0)))
    rows.append(_ratio("DEQ on digits, test accuracy after 200 steps: cakejax / optimistix",
                       _DEQ + "track_test_accuracy", {"impl": "cakejax"},
                       {"impl": "optimistix"}, (">=", 0.99)))
    return rows


RATIOS = [
    _ratio("Deliciousness, jitted, model closed over: cakejax / course",
           _AGAINST + "time_closed_over", _CAKEJAX, _COURSE, ("<=", 1.05),
           problem="Deliciousness"),
    _ratio("LikeModel loss, jitted, model closed over: cakejax / course",
           _AGAINST + "time_closed_over", _CAKEJAX, _COURSE, ("<=", 1.05), problem="LikeModel"),
    _ratio("Deliciousness, compile time: cakejax / course",
           _AGAINST + "time_compile", _CAKEJAX, _COURSE, ("<=", 1.2), problem="Deliciousness"),
    _ratio("LikeModel loss, compile time: cakejax / course",
           _AGAINST + "time_compile", _CAKEJAX, _COURSE, ("<=", 1.2), problem="LikeModel"),
    _ratio("Deliciousness, model as a jit argument: cakejax / course",
           _AGAINST + "time_as_jit_argument", _CAKEJAX, _COURSE, ("<=", 1.25),
           problem="Deliciousness"),
    _ratio("LikeModel loss, model as a jit argument: cakejax / course",
           _AGAINST + "time_as_jit_argument", _CAKEJAX, _COURSE, ("<=", 1.25),
           problem="LikeModel"),
    _ratio("Deliciousness gradient, closed over: cakejax / course",
           _AGAINST + "time_grad_closed_over", _CAKEJAX, _COURSE, problem="Deliciousness"),
    _ratio("dispatch of a model argument: eqx.filter_jit / jax.jit",
           "bench_baseline.Dispatch.time_call", {"jit": "eqx.filter_jit"}, {"jit": "jax.jit"}),
    _ratio("YeastActivity / jax.nn.softplus, forward, n = 10⁶",
           "bench_layers.Softplus.time_steady_state", {"impl": "YeastActivity"},
           {"impl": "jax.nn.softplus"}, ("<=", 1.05), n=1000000, transform="forward"),
    _ratio("YeastActivity / jax.nn.softplus, gradient, n = 10⁶",
           "bench_layers.Softplus.time_steady_state", {"impl": "YeastActivity"},
           {"impl": "jax.nn.softplus"}, ("<=", 1.05), n=1000000, transform="grad"),
    _ratio("Deliciousness forward with / without GradientClip",
           "bench_layers.Clip.time_steady_state", {"impl": "with GradientClip"},
           {"impl": "without"}, ("<=", 1.05), transform="forward"),
    _ratio("Deliciousness forward, XLA flops (deterministic): with / without GradientClip",
           "bench_layers.Clip.track_flops", {"impl": "with GradientClip"}, {"impl": "without"},
           ("<=", 1.0), transform="forward"),
    *_fixed_point_rows(),
    _ratio("hvp / grad, d = 4096", "bench_scaling.HvpVsGrad.time_steady_state",
           {"method": "hvp"}, {"method": "grad"}, ("<=", 1.5), d=4096),
    _ratio("full Hessian, d = 1024: jax.hessian / vmap(hvp)",
           "bench_scaling.Hessian.time_steady_state", {"method": "jax.hessian"},
           {"method": "vmap(hvp)"}, d=1024),
    _ratio("256 per-customer gradients: Python loop / vmap",
           "bench_scaling.PerExample.time_gradients", {"method": "loop"}, {"method": "vmap"},
           batch=256),
    _ratio("cold start (import, trace, compile, call): type checks on / off",
           "bench_baseline.ColdStart.timeraw_import_trace_compile_call", {"typecheck": "on"},
           {"typecheck": "off"}),
]


class Results:
    """The asv results of one machine, read with the parameter names from `benchmarks.json`;
    each benchmark from the newest run that has it."""

    def __init__(self, results_dir: pathlib.Path, machine: str):
        runs = [p for p in (results_dir / machine).glob("*.json") if p.name != "machine.json"]
        if not runs:
            raise SystemExit(f"no asv results for machine {machine!r} in {results_dir}")
        self.runs = sorted((json.loads(p.read_text()) for p in runs), key=lambda d: d["date"],
                           reverse=True)
        self.names = {name: bench.get("param_names", [])
                      for name, bench in json.loads((results_dir / "benchmarks.json")
                                                    .read_text()).items() if name != "version"}
        self.machine = json.loads((results_dir / machine / "machine.json").read_text())
        self.commits: set[str] = set()

    def get(self, benchmark: str, params: dict, backend: str) -> float | None:
        """The result at `params` on `backend`. A benchmark without a backend parameter (the
        cold start, always on CPU) counts as a CPU result."""
        if "backend" in self.names.get(benchmark, []):
            params = {**params, "backend": backend}
        elif backend != "cpu":
            return None
        run = next((r for r in self.runs if benchmark in r["results"]), None)
        if run is None or benchmark not in self.names:
            return None
        entry = run["results"][benchmark]
        columns = run["result_columns"]
        values = entry[columns.index("result")]
        grid = entry[columns.index("params")]
        wanted = [repr(params[name]) if isinstance(params[name], str) else str(params[name])
                  for name in self.names[benchmark]]
        for combo, value in zip(itertools.product(*grid), values or []):
            if list(combo) == wanted:
                self.commits.add(run["commit_hash"][:8])
                return value if value is not None and not math.isnan(value) else None
        return None


def table(results: Results) -> str:
    backends = ["cpu", "gpu"]
    lines = ["| comparison | target | " + " | ".join(backends) + " |",
             "|---|---|" + "---|" * len(backends)]
    for label, (num_name, num), (den_name, den), target in RATIOS:
        cells = []
        for backend in backends:
            a = results.get(num_name, num, backend)
            b = results.get(den_name, den, backend)
            if a is None or b is None:
                cells.append("no peer result" if a is not None else "not measured")
                continue
            ratio = a / b
            mark = ""
            if target is not None:
                op, bound = target
                mark = " ✓" if (ratio <= bound if op == "<=" else ratio >= bound) else " ✗"
            cells.append(f"{ratio:.2f}×{mark}")
        goal = "" if target is None else f"{ {'<=': '≤', '>=': '≥'}[target[0]]} {target[1]}"
        lines.append(f"| {label} | {goal} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def caption(results: Results) -> str:
    """The machine (from the results) and the versions installed where the table is written
    (run it in the environment that `asv run --python=same` measured)."""
    m = results.machine
    packages = ("jax", "jaxlib", "equinox", "jaxtyping", "beartype", "optimistix", "lineax")
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in packages)
    return (f"Measured on `{m.get('machine')}` ({m.get('cpu', '?')}, {m.get('num_cpu', '?')} "
            f"cores, {m.get('ram', '?')} RAM, {m.get('os', '?')}) at commits "
            f"{', '.join(sorted(results.commits))} (each row from the newest run that measured "
            f"it), Python {platform.python_version()}, {versions}.")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machine", default="cpu-2core-dev")
    parser.add_argument("--results", type=pathlib.Path, default=ROOT / ".asv" / "results")
    parser.add_argument("--write-readme", action="store_true")
    args = parser.parse_args(argv)
    results = Results(args.results, args.machine)
    rows = table(results)  # first: it records which runs the rows come from
    text = f"{caption(results)}\n\n{rows}"
    if args.write_readme:
        readme = ROOT / "README.md"
        before, rest = readme.read_text().split("<!-- headline -->\n", 1)
        _, after = rest.split("<!-- /headline -->", 1)
        readme.write_text(f"{before}<!-- headline -->\n{text}\n<!-- /headline -->{after}")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
