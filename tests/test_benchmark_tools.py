"""The tools that make the benchmarks' numbers trustworthy (issue 33): the interleaved ratio
and the regression check, on programs whose cost is known, sleeps of a set length (on a busy
machine a sleep still takes its length plus a wake-up, up to a millisecond when every core is
busy: the sleeps are tens of milliseconds, so that it stays within a few percent; a busy wait
would be preempted); the roofline's cost analysis and the program fingerprint."""

import json
import pathlib
import shutil
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import pytest

from benchmarks import compare, headline, interleaved, roofline
from benchmarks.headline import INTERLEAVED, TIMED
from benchmarks.interleaved import measure, SAMPLES


ROOT = pathlib.Path(__file__).resolve().parents[1]


def sleep(seconds, log=None, name=None):
    """A call that takes `seconds` of wall time (and notes that it ran)."""

    def call():
        if log is not None:
            log.append(name)
        time.sleep(seconds)

    return call


@pytest.mark.parametrize("factor", [0.5, 1.0, 2.0])
def test_measure_recovers_a_known_ratio(factor):
    ratio = measure(sleep(factor * 0.05), sleep(0.05), min_time=0.1)
    assert len(ratio.samples) == SAMPLES
    assert ratio.low <= ratio.median <= ratio.high
    assert ratio.median == pytest.approx(factor, rel=0.05)


def test_measure_interleaves_in_alternating_order(monkeypatch):
    """Each sample is `number` calls of one side next to `number` of the other, A B then B A,
    so that a drift in the machine's speed charges both sides alike. (Here A's sample is 2
    calls and B's 3, by fiat, and a sample can never last `min_time`: after the first calls
    and one pair of samples the calls are counted again, and the samples start again.)"""
    log = []
    a, b = sleep(0, log, "a"), sleep(0, log, "b")
    monkeypatch.setattr(interleaved, "_number", lambda fn, min_time, number=1: {a: 2, b: 3}[fn])
    measure(a, b, samples=4, min_time=1.0)
    assert "".join(log) == "ab" + "aabbb" + "aabbbbbbaaaabbbbbbaa"


def test_cold_calls_are_samples_from_the_first():
    """Calls that are cold by construction (`Cold`: a compile, a fresh interpreter) are not
    warmed up: the first two calls are the first pair of samples."""
    log = []
    a, b = interleaved.Cold(sleep(0.03, log, "a")), interleaved.Cold(sleep(0.03, log, "b"))
    ratio = measure(a, b, samples=3, min_time=0.02)
    assert "".join(log) == "abbaab"
    assert len(ratio.samples) == 3


def test_a_long_call_is_a_sample_of_its_own():
    """A call that lasts `min_time` (a large batch; the first call of a program) is warmed
    up once and then timed once a sample: no calls spent on counting."""
    log = []
    measure(sleep(0.03, log, "a"), sleep(0.03, log, "b"), samples=3, min_time=0.02)
    assert "".join(log) == "ab" + "abbaab"


def test_a_warm_up_that_compiled_does_not_set_the_sample():
    """A first call that is slow (it compiled) and later calls that are fast: the sample is
    counted again after the first, so that each lasts `min_time`, and the ratio is right."""
    calls = []

    def compiles_first():
        calls.append(None)
        time.sleep(0.25 if len(calls) == 1 else 0.01)

    ratio = measure(compiles_first, sleep(0.02), min_time=0.2)
    assert ratio.median == pytest.approx(0.5, rel=0.05)
    assert ratio.seconds[0] == pytest.approx(0.01, rel=0.1)
    assert len(calls) > 1 + SAMPLES * 10  # about 20 calls a sample, not one


def test_a_raw_program_runs_in_a_fresh_interpreter(tmp_path):
    """A `timeraw_` benchmark's code runs in its own process, once a call."""
    marker = tmp_path / "ran"
    call = interleaved._raw(f"open({str(marker)!r}, 'a').write('x')")
    call()
    call()
    assert marker.read_text() == "xx"


def test_measure_refuses_too_few_samples():
    with pytest.raises(ValueError, match="samples must be at least 2 .*, got 1"):
        measure(sleep(0), sleep(0), samples=1)


def _results(folder, commit, measured, date=0):
    """An asv results file of `commit` holding `measured`, {(label, backend): Ratio}, as
    `bench_headline.Ratios` records it (params as reprs, results in row-major order)."""
    labels = [row.label for row in TIMED]
    backends = ["cpu", "gpu"]
    results = {}
    for name, field in zip(INTERLEAVED, ("median", "low", "high"), strict=True):
        flat = [
            getattr(measured[label, b], field) if (label, b) in measured else None
            for label in labels
            for b in backends
        ]
        results[name] = [flat, [[repr(x) for x in labels], [repr(b) for b in backends]], "v"]
    run = {
        "commit_hash": commit,
        "date": date,
        "env_name": "existing-py3.11",
        "result_columns": ["result", "params", "version"],
        "results": results,
    }
    (folder / f"{commit[:8]}-existing-py3.11.json").write_text(json.dumps(run))


def test_compare_flags_a_synthetic_slowdown(tmp_path):
    """Three rows measured at BASE and HEAD with `measure`. At HEAD one row's cakejax side is
    30 % slower (flagged), one is 4 % slower (within the threshold: not flagged), and in one
    where cakejax is the denominator (a ratio that falls when cakejax slows down) cakejax's
    side is 30 % slower (flagged); the command names exactly the two."""
    up = next(row for row in TIMED if row.slower == "up")
    small = next(row for row in TIMED if row.slower == "up" and row is not up)
    down = next(row for row in TIMED if row.slower == "down")
    base = {
        (row.label, "cpu"): measure(sleep(0.025), sleep(0.025), min_time=0.1)
        for row in (up, small, down)
    }
    head = {
        (up.label, "cpu"): measure(sleep(0.0325), sleep(0.025), min_time=0.1),
        (small.label, "cpu"): measure(sleep(0.026), sleep(0.025), min_time=0.1),
        (down.label, "cpu"): measure(sleep(0.025), sleep(0.0325), min_time=0.1),
    }
    machine = tmp_path / "m"
    machine.mkdir()
    _results(machine, "a" * 40, base)
    _results(machine, "b" * 40, head)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.compare",
            "aaaa",
            "bbbb",
            "--machine",
            "m",
            "--results",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    flagged = run.stdout.split("interquartile ranges:\n", 1)[1].split("\n")
    assert sorted(line.strip() for line in flagged if line.strip()) == sorted(
        [f"[cpu] {up.label}", f"[cpu] {down.label}"]
    )


def test_a_row_that_moved_since_the_previous_run_says_so(tmp_path):
    """Quartiles measure the noise within one process. A row whose median moved by more than
    10 % since the previous run of the same benchmark code is marked noise-limited, naming
    that run; one that moved less is not."""
    moved, steady = TIMED[0].label, TIMED[1].label

    def ratio(median):
        return interleaved.Ratio(median, 0.99 * median, 1.01 * median, (median,) * 7, (1, 1))

    machine = tmp_path / "m"
    machine.mkdir()
    _results(machine, "a" * 40, {(moved, "cpu"): ratio(1.0), (steady, "cpu"): ratio(1.0)}, 1)
    _results(machine, "b" * 40, {(moved, "cpu"): ratio(1.2), (steady, "cpu"): ratio(1.05)}, 2)
    results = headline.Results(tmp_path, "m", {n: ("v", ["row", "backend"]) for n in INTERLEAVED})
    assert headline._interleaved(results, moved, "cpu", None) == (
        "1.20× (1.19–1.21) noise-limited (previous run 1.00× at aaaaaaaa)"
    )
    assert headline._interleaved(results, steady, "cpu", None) == "1.05× (1.04–1.06)"


def test_compare_passes_a_run_against_itself_and_refuses_a_missing_commit(tmp_path):
    measured = {
        (row.label, "cpu"): measure(sleep(0.025), sleep(0.025), min_time=0.1) for row in TIMED[:2]
    }
    machine = tmp_path / "m"
    machine.mkdir()
    _results(machine, "a" * 40, measured)
    args = ["--machine", "m", "--results", str(tmp_path)]
    assert compare.main(["aaaa", "aaaa", *args]) == 0
    assert compare.main(["aaaa", "cccc", *args]) == 2


def test_worse_needs_the_threshold_and_the_quartiles_apart():
    base = (1.0, 0.95, 1.05)
    assert compare.worse(base, (1.3, 1.25, 1.35), "up", 0.1)
    assert not compare.worse(base, (1.3, 1.0, 1.6), "up", 0.1)  # quartiles overlap
    assert not compare.worse(base, (1.08, 1.07, 1.09), "up", 0.1)  # under 10 %
    assert not compare.worse(base, (0.7, 0.65, 0.75), "up", 0.1)  # faster
    assert compare.worse(base, (0.7, 0.65, 0.75), "down", 0.1)


def _compiled(fn, n=1000):
    return jax.jit(fn).lower(jnp.ones(n), jnp.ones(n)).compile()


def test_cost_counts_the_triads_bytes_and_flops():
    """The roofline's numerator: XLA's bytes accessed by b + 3c (two reads and a write of n
    float32) and its flops (a multiply and an add per element)."""
    n = 4096
    assert roofline.cost(_compiled(lambda b, c: b + 3.0 * c, n)) == (12.0 * n, 2.0 * n)


def test_the_fingerprint_names_the_program_not_its_source():
    """The same program from another function, at another line, in another process has the
    same fingerprint; a program that computes something else has another."""

    def named(b, c):
        return b + 3.0 * c

    triad = roofline.fingerprint(_compiled(lambda b, c: b + 3.0 * c))
    assert roofline.fingerprint(_compiled(named)) == triad
    assert roofline.fingerprint(_compiled(lambda b, c: b + 2.0 * c)) != triad
    assert roofline.fingerprint(_compiled(lambda b, c: b * 3.0 + c)) != triad
    code = (
        "import jax, jax.numpy as jnp\n"
        "from benchmarks import roofline\n"
        "f = jax.jit(lambda x, y: x + 3.0 * y)\n"
        "print(roofline.fingerprint(f.lower(jnp.ones(1000), jnp.ones(1000)).compile()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == triad
    assert roofline.as_number(triad) == int(triad[:13], 16)


def test_fraction_is_the_tighter_roof():
    # 1 GB in 1 s on a 2 GB/s machine: half the memory roof; 1 Gflop of 100 Gflop/s: 1 %.
    assert roofline.fraction(1e9, 1e9, 1.0, 2e9, 1e11) == (0.5, "memory")
    assert roofline.fraction(1e6, 5e10, 1.0, 2e9, 1e11) == (0.5, "compute")


def test_tidy_names_results_by_python_version_and_keeps_every_number(tmp_path):
    """Runs of `asv run --python=same` written under two interpreter paths: after
    `benchmarks.tidy` no file name or content holds a path, the two runs of one commit are
    one (each benchmark's newer result kept), and the README's headline table reads the same
    numbers as before."""
    from benchmarks import headline, tidy

    machine = tmp_path / "cpu-2core-dev"
    shutil.copytree(ROOT / ".asv" / "results" / "cpu-2core-dev", machine)
    existing = [p for p in machine.glob("*existing*.json")]
    for i, path in enumerate(existing):
        run = json.loads(path.read_text())
        where = f"/home/someone/venv{i % 2}/bin/python3"
        run["python"] = run["params"]["python"] = where
        run["env_name"] = "existing-py" + where.replace("/", "_").replace(".", "_")
        path.unlink()
        (machine / f"{run['commit_hash'][:8]}-{run['env_name']}.json").write_text(json.dumps(run))
    # A second, older run of the newest commit under another path, with a benchmark of its own.
    newest = max(machine.glob("*existing*.json"), key=lambda p: json.loads(p.read_text())["date"])
    older = json.loads(newest.read_text())
    older["date"] -= 1
    older["env_name"] = "existing-py_other_path_bin_python3"
    kept = next(iter(older["results"]))
    older["results"] = {"bench_old.Only.time_here": older["results"][kept]}
    (machine / f"{older['commit_hash'][:8]}-{older['env_name']}.json").write_text(json.dumps(older))

    benchmarks = headline.discover()
    before = headline.table({"cpu": headline.Results(tmp_path, machine.name, benchmarks)})
    tidy.tidy(machine, "3.11")
    after = headline.table({"cpu": headline.Results(tmp_path, machine.name, benchmarks)})
    assert after == before
    for path in machine.glob("*.json"):
        text = path.read_text()
        assert "someone" not in path.name + text and "other_path" not in path.name + text
    name = f"{newest.name[:8]}-{tidy.env_name({**older, 'python': '3.11'})}.json"
    merged = json.loads((machine / name).read_text())
    assert "bench_old.Only.time_here" in merged["results"]
    assert kept in merged["results"]


def test_tidy_leaves_out_a_backend_the_machine_never_measured():
    nan = float("nan")
    run = {
        "result_columns": ["result", "params", "version", "samples"],
        "results": {
            "b.C.time_x": [
                [1.0, nan, 2.0, None],
                [["'a'", "'b'"], ["'cpu'", "'gpu'"]],
                "v",
                [[1.0], None, [2.0], None],
            ],
            "b.D.track_y": [[3.0], [["'z'"]], "v", None],
        },
    }
    from benchmarks import tidy

    assert tidy._unrunnable_backends([run]) == {"'gpu'"}
    run = tidy._drop(run, {"'gpu'"})
    assert run["results"]["b.C.time_x"] == [
        [1.0, 2.0],
        [["'a'", "'b'"], ["'cpu'"]],
        "v",
        [[1.0], [2.0]],
    ]
    assert run["results"]["b.D.track_y"] == [[3.0], [["'z'"]], "v", None]


def test_committed_results_hold_no_machine_path():
    for path in (ROOT / ".asv" / "results").glob("*/*.json"):
        run = json.loads(path.read_text())
        if path.name == "machine.json":
            continue
        assert "/" not in run["python"] and not run["env_name"].startswith("existing-py_"), path
        assert path.name == f"{run['commit_hash'][:8]}-{run['env_name']}.json"


def test_agreement_allows_noise_limited_rows_only():
    steady, noisy = (1.0, 0.98, 1.02), (1.0, 0.8, 1.2)
    assert not compare.disagree(steady, (1.08, 1.07, 1.09), 0.1)
    assert compare.disagree(steady, (1.15, 1.14, 1.16), 0.1)
    assert compare.disagree(steady, (0.85, 0.84, 0.86), 0.1)
    assert not compare.disagree(noisy, (1.15, 1.14, 1.16), 0.1)


def test_the_readmes_deterministic_command_selects_no_timing():
    """The README's quick command for the deterministic metrics (flops, bytes, steps,
    accuracy) selects every `track_` benchmark except the timings tracked as numbers (the
    interleaved ratios and times, the machine's roofs): those repeat their measurement
    however quick the run."""
    import re

    from benchmarks.headline import discover

    readme = (ROOT / "README.md").read_text()
    command = readme.split("# the deterministic metrics", 1)[0].rsplit("asv run", 1)[1]
    pattern = re.search(r'--bench "([^"]+)"', command).group(1)
    timings = (
        "bench_headline.",
        "bench_batch.Batch.",
        "bench_batch.BatchRatio.",
        "bench_bake.RecipesPerDevice.",
    )
    tracks = [name for name in discover() if name.split(".")[-1].startswith("track_")]
    selected = {name for name in tracks if re.search(pattern, name)}
    assert selected == {name for name in tracks if not name.startswith(timings)}
    assert "bench_batch.BatchCost.track_flops" in selected
