"""`python -m benchmarks.tidy`: asv results fit to commit, after every `asv run`.

`asv run --python=same` names its environment after the interpreter's path
(`existing-py_work_main_.venv_bin_python3`) and writes that path into the results' file name
and contents. Committed, such results draw the same interpreter as a line of its own per
machine path on the dashboard, and carry a machine's layout into the repository. This rewrites
each run of an existing environment as its Python version (`existing-py3.11-jax0.10.2-...`,
the way asv names the virtualenvs it builds), merging two runs of one commit that differ only
by the path (the newer result of each benchmark is kept).

It also leaves out the parameter sets that cannot run on a machine: a backend that none of a
machine's results measured (the GPU parameter sets of a CPU machine), so that the dashboard
offers no empty series.
"""

import argparse
import itertools
import json
import math
import pathlib
import platform

from .headline import ROOT


#: The result columns that hold one value per parameter combination.
PER_COMBINATION = (
    "result",
    "stats_ci_99_a",
    "stats_ci_99_b",
    "stats_q_25",
    "stats_q_75",
    "stats_number",
    "stats_repeat",
    "samples",
)


def env_name(run: dict) -> str:
    """`existing-py<major.minor>` and the requirements, as asv names its virtualenvs."""
    requirements = "-".join(f"{k}{v}" for k, v in sorted(run["requirements"].items()))
    return f"existing-py{run['python']}" + (f"-{requirements}" if requirements else "")


def _measured(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _normalise_python(run: dict, python: str) -> dict:
    if run["env_name"].startswith("existing-py_") or "/" in str(run.get("python", "")):
        run["python"] = python
        run["params"]["python"] = python
        run["env_name"] = env_name(run)
    return run


def _merge(older: dict, newer: dict) -> dict:
    """One run of a commit from two: each benchmark's newer result."""
    merged = dict(newer)
    merged["results"] = {**older["results"], **newer["results"]}
    merged["durations"] = {**older.get("durations", {}), **newer.get("durations", {})}
    return merged


def _unrunnable_backends(runs: list[dict]) -> set[str]:
    """The backend values (as asv stores them, reprs) that no run of the machine measured."""
    seen, measured = set(), set()
    for run in runs:
        columns = run["result_columns"]
        for entry in run["results"].values():
            grid = entry[columns.index("params")]
            values = entry[columns.index("result")] or []
            for axis, options in enumerate(grid):
                if "'cpu'" not in options and "'gpu'" not in options:
                    continue
                seen.update(options)
                for combo, value in zip(itertools.product(*grid), values, strict=False):
                    if _measured(value):
                        measured.add(combo[axis])
    return seen - measured


def _drop(run: dict, backends: set[str]) -> dict:
    """`run` without the parameter combinations on `backends`."""
    columns = run["result_columns"]
    for name, entry in run["results"].items():
        grid = entry[columns.index("params")]
        axes = [i for i, options in enumerate(grid) if set(options) & backends]
        if not axes:
            continue
        keep = [all(combo[i] not in backends for i in axes) for combo in itertools.product(*grid)]
        for column in PER_COMBINATION:
            if column in columns:
                i = columns.index(column)
                if i < len(entry) and isinstance(entry[i], list) and len(entry[i]) == len(keep):
                    entry[i] = [v for v, k in zip(entry[i], keep, strict=True) if k]
        entry[columns.index("params")] = [
            [v for v in options if v not in backends] if i in axes else options
            for i, options in enumerate(grid)
        ]
        run["results"][name] = entry
    return run


def tidy(machine_dir: pathlib.Path, python: str) -> list[str]:
    """Rewrites the results of one machine in place; returns what it did."""
    done = []
    runs = {}
    for path in sorted(machine_dir.glob("*.json")):
        if path.name == "machine.json":
            continue
        run = _normalise_python(json.loads(path.read_text()), python)
        name = f"{run['commit_hash'][:8]}-{run['env_name']}.json"
        if name != path.name:
            done.append(f"{path.name} -> {name}")
            path.unlink()
        if name in runs:
            old = runs[name]
            runs[name] = _merge(*sorted((old, run), key=lambda r: r["date"]))
        else:
            runs[name] = run
    unrunnable = _unrunnable_backends(list(runs.values()))
    if unrunnable:
        done.append(f"left out {sorted(unrunnable)}: never measured on {machine_dir.name}")
    for name, run in runs.items():
        text = json.dumps(_drop(run, unrunnable))  # as asv writes them
        path = machine_dir / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    return done


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=pathlib.Path, default=ROOT / ".asv" / "results")
    parser.add_argument(
        "--python",
        default=None,
        help="the Python version the existing environments ran (default: this interpreter's)",
    )
    args = parser.parse_args(argv)
    python = args.python or ".".join(platform.python_version_tuple()[:2])
    for machine_dir in sorted(p for p in args.results.iterdir() if p.is_dir()):
        for line in tidy(machine_dir, python):
            print(f"{machine_dir.name}: {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
