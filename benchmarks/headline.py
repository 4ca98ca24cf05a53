"""`python -m benchmarks.headline`: the README's table of headline ratios, computed from the
asv results of one machine (the newest run there), never typed by hand.

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

#: (what is compared, numerator, denominator, target as (comparison, bound) or None). Each side
#: is (benchmark, {param: value}); the backend is added per machine.
RATIOS = [
    ("Deliciousness, jitted, model closed over: cakejax / course",
     ("bench_baseline.AgainstCourse.time_closed_over", {"problem": "Deliciousness", "impl": "cakejax"}),
     ("bench_baseline.AgainstCourse.time_closed_over", {"problem": "Deliciousness", "impl": "course"}),
     ("<=", 1.05)),
    ("LikeModel loss, jitted, model closed over: cakejax / course",
     ("bench_baseline.AgainstCourse.time_closed_over", {"problem": "LikeModel", "impl": "cakejax"}),
     ("bench_baseline.AgainstCourse.time_closed_over", {"problem": "LikeModel", "impl": "course"}),
     ("<=", 1.05)),
    ("Deliciousness, compile time: cakejax / course",
     ("bench_baseline.AgainstCourse.time_compile", {"problem": "Deliciousness", "impl": "cakejax"}),
     ("bench_baseline.AgainstCourse.time_compile", {"problem": "Deliciousness", "impl": "course"}),
     ("<=", 1.2)),
    ("LikeModel loss, compile time: cakejax / course",
     ("bench_baseline.AgainstCourse.time_compile", {"problem": "LikeModel", "impl": "cakejax"}),
     ("bench_baseline.AgainstCourse.time_compile", {"problem": "LikeModel", "impl": "course"}),
     ("<=", 1.2)),
    ("Deliciousness, model as a jit argument: cakejax / course",
     ("bench_baseline.AgainstCourse.time_as_jit_argument", {"problem": "Deliciousness", "impl": "cakejax"}),
     ("bench_baseline.AgainstCourse.time_as_jit_argument", {"problem": "Deliciousness", "impl": "course"}),
     ("<=", 1.25)),
    ("LikeModel loss, model as a jit argument: cakejax / course",
     ("bench_baseline.AgainstCourse.time_as_jit_argument", {"problem": "LikeModel", "impl": "cakejax"}),
     ("bench_baseline.AgainstCourse.time_as_jit_argument", {"problem": "LikeModel", "impl": "course"}),
     ("<=", 1.25)),
    ("Deliciousness gradient, closed over: cakejax / course",
     ("bench_baseline.AgainstCourse.time_grad_closed_over", {"problem": "Deliciousness", "impl": "cakejax"}),
     ("bench_baseline.AgainstCourse.time_grad_closed_over", {"problem": "Deliciousness", "impl": "course"}),
     None),
    ("dispatch of a model argument: eqx.filter_jit / jax.jit",
     ("bench_baseline.Dispatch.time_call", {"jit": "eqx.filter_jit"}),
     ("bench_baseline.Dispatch.time_call", {"jit": "jax.jit"}),
     None),
    ("YeastActivity / jax.nn.softplus, forward, n = 10⁶",
     ("bench_layers.Softplus.time_steady_state", {"impl": "YeastActivity", "n": 1000000, "transform": "forward"}),
     ("bench_layers.Softplus.time_steady_state", {"impl": "jax.nn.softplus", "n": 1000000, "transform": "forward"}),
     ("<=", 1.05)),
    ("YeastActivity / jax.nn.softplus, gradient, n = 10⁶",
     ("bench_layers.Softplus.time_steady_state", {"impl": "YeastActivity", "n": 1000000, "transform": "grad"}),
     ("bench_layers.Softplus.time_steady_state", {"impl": "jax.nn.softplus", "n": 1000000, "transform": "grad"}),
     ("<=", 1.05)),
    ("Deliciousness forward with / without GradientClip",
     ("bench_layers.Clip.time_steady_state", {"impl": "with GradientClip", "transform": "forward"}),
     ("bench_layers.Clip.time_steady_state", {"impl": "without", "transform": "forward"}),
     ("<=", 1.05)),
    ("Deliciousness forward, XLA flops (deterministic): with / without GradientClip",
     ("bench_layers.Clip.track_flops", {"impl": "with GradientClip", "transform": "forward"}),
     ("bench_layers.Clip.track_flops", {"impl": "without", "transform": "forward"}),
     ("<=", 1.0)),
    ("FixedPoint gradient, n = 1000: optimistix (default ImplicitAdjoint) / cakejax",
     ("bench_layers.FixedPointGradient.time_grad", {"method": "optimistix", "n": 1000}),
     ("bench_layers.FixedPointGradient.time_grad", {"method": "cakejax", "n": 1000}),
     (">=", 5.0)),
    ("FixedPoint gradient, n = 1000: optimistix + GMRES / cakejax",
     ("bench_layers.FixedPointGradient.time_grad", {"method": "optimistix+GMRES", "n": 1000}),
     ("bench_layers.FixedPointGradient.time_grad", {"method": "cakejax", "n": 1000}),
     (">=", 1.0)),
    ("FixedPoint gradient, n = 1000: unrolled loop / cakejax",
     ("bench_layers.FixedPointGradient.time_grad", {"method": "unrolled", "n": 1000}),
     ("bench_layers.FixedPointGradient.time_grad", {"method": "cakejax", "n": 1000}),
     None),
    ("FixedPoint gradient, n = 1000, compile time: cakejax / optimistix",
     ("bench_layers.FixedPointGradient.time_compile_grad", {"method": "cakejax", "n": 1000}),
     ("bench_layers.FixedPointGradient.time_compile_grad", {"method": "optimistix", "n": 1000}),
     ("<=", 1.0)),
    ("hvp / grad, d = 4096",
     ("bench_scaling.HvpVsGrad.time_steady_state", {"method": "hvp", "d": 4096}),
     ("bench_scaling.HvpVsGrad.time_steady_state", {"method": "grad", "d": 4096}),
     ("<=", 1.5)),
    ("full Hessian, d = 1024: jax.hessian / vmap(hvp)",
     ("bench_scaling.Hessian.time_steady_state", {"method": "jax.hessian", "d": 1024}),
     ("bench_scaling.Hessian.time_steady_state", {"method": "vmap(hvp)", "d": 1024}),
     None),
    ("256 per-customer gradients: Python loop / vmap",
     ("bench_scaling.PerExample.time_gradients", {"method": "loop", "batch": 256}),
     ("bench_scaling.PerExample.time_gradients", {"method": "vmap", "batch": 256}),
     None),
    ("cold start (import, trace, compile, call): type checks on / off",
     ("bench_baseline.ColdStart.timeraw_import_trace_compile_call", {"typecheck": "on"}),
     ("bench_baseline.ColdStart.timeraw_import_trace_compile_call", {"typecheck": "off"}),
     None),
]


class Results:
    """One asv results file, read with the parameter names from `benchmarks.json`."""

    def __init__(self, results_dir: pathlib.Path, machine: str):
        runs = [p for p in (results_dir / machine).glob("*.json") if p.name != "machine.json"]
        if not runs:
            raise SystemExit(f"no asv results for machine {machine!r} in {results_dir}")
        self.data = max((json.loads(p.read_text()) for p in runs), key=lambda d: d["date"])
        self.names = {name: bench.get("param_names", [])
                      for name, bench in json.loads((results_dir / "benchmarks.json")
                                                    .read_text()).items() if name != "version"}
        self.machine = json.loads((results_dir / machine / "machine.json").read_text())

    def get(self, benchmark: str, params: dict) -> float | None:
        entry = self.data["results"].get(benchmark)
        if entry is None:
            return None
        columns = self.data["result_columns"]
        values = entry[columns.index("result")]
        grid = entry[columns.index("params")]
        wanted = [repr(params[name]) if isinstance(params[name], str) else str(params[name])
                  for name in self.names[benchmark]]
        for combo, value in zip(itertools.product(*grid), values or []):
            if list(combo) == wanted:
                return value if value is not None and not math.isnan(value) else None
        return None


def table(results: Results) -> str:
    backends = ["cpu", "gpu"]
    lines = ["| comparison | target | " + " | ".join(backends) + " |",
             "|---|---|" + "---|" * len(backends)]
    for label, (num_name, num), (den_name, den), target in RATIOS:
        cells = []
        for backend in backends:
            a = results.get(num_name, {**num, "backend": backend} if "Cold" not in num_name
                            else num)
            b = results.get(den_name, {**den, "backend": backend} if "Cold" not in den_name
                            else den)
            if a is None or b is None or (backend != "cpu" and "Cold" in num_name):
                cells.append("not measured")
                continue
            ratio = a / b
            mark = ""
            if target is not None:
                op, bound = target
                mark = " ✓" if (ratio <= bound if op == "<=" else ratio >= bound) else " ✗"
            cells.append(f"{ratio:.2f}×{mark}")
        goal = "" if target is None else f"{target[0].replace('<=', '≤').replace('>=', '≥')} {target[1]}"
        lines.append(f"| {label} | {goal} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def caption(results: Results) -> str:
    """The machine (from the results) and the versions installed where the table is written
    (run it in the environment that `asv run --python=same` measured)."""
    m = results.machine
    packages = ("jax", "jaxlib", "equinox", "jaxtyping", "beartype", "optimistix", "lineax")
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in packages)
    return (f"Measured on `{m.get('machine')}` ({m.get('cpu', '?')}, {m.get('num_cpu', '?')} "
            f"cores, {m.get('ram', '?')} RAM, {m.get('os', '?')}) at commit "
            f"{results.data['commit_hash'][:8]}, Python {platform.python_version()}, "
            f"{versions}.")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machine", default="cpu-2core-dev")
    parser.add_argument("--results", type=pathlib.Path, default=ROOT / ".asv" / "results")
    parser.add_argument("--write-readme", action="store_true")
    args = parser.parse_args(argv)
    results = Results(args.results, args.machine)
    text = f"{caption(results)}\n\n{table(results)}"
    if args.write_readme:
        readme = ROOT / "README.md"
        before, rest = readme.read_text().split("<!-- headline -->\n", 1)
        _, after = rest.split("<!-- /headline -->", 1)
        readme.write_text(f"{before}<!-- headline -->\n{text}\n<!-- /headline -->{after}")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
