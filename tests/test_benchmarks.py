"""The asv suite cannot rot: every benchmark's setup and body run once, on CPU, at its smallest
sizes (every implementation, method and model it compares, so each code path runs)."""

import importlib
import math
import numbers
import pathlib
import subprocess
import sys

import jax
import pytest


# Slow (every benchmark compiled once: about a minute): `python -m pytest -m slow`.
pytestmark = pytest.mark.slow


ROOT = pathlib.Path(__file__).resolve().parents[1]
MODULES = sorted(p.stem for p in (ROOT / "benchmarks").glob("bench_*.py"))


@pytest.fixture(autouse=True)
def standard_promotion():
    """The course's baseline code mixes bool and float arrays, as it did in the notebook; asv
    runs it under JAX's default promotion, and so does this test."""
    with jax.numpy_dtype_promotion("standard"):
        yield


def _cases():
    for name in MODULES:
        module = importlib.import_module(f"benchmarks.{name}")
        for cls_name, cls in vars(module).items():
            # As asv: classes of this module only, private (underscored) bases skipped.
            if (
                not isinstance(cls, type)
                or cls.__module__ != module.__name__
                or cls_name.startswith("_")
            ):
                continue
            methods = [m for m in dir(cls) if m.startswith(("time_", "track_", "timeraw_"))]
            if not methods:
                continue
            names = getattr(cls, "param_names", ())
            choices = []
            # A suite that only composes others (the headline ratios) names the few values
            # that cover its own code: every value would re-run the other suites' cases.
            grid = getattr(cls, "smoke_params", getattr(cls, "params", ()))
            for param, values in zip(names, grid, strict=True):
                if param == "backend":
                    choices.append(["cpu"])
                elif all(isinstance(v, numbers.Number) for v in values):
                    choices.append([min(values)])
                else:
                    choices.append(list(values))
            for combo in _covering(choices):
                yield pytest.param(cls, methods, combo, id=f"{name}.{cls_name}{list(combo)}")


def _covering(choices):
    """Every value of every parameter at least once: the first values throughout, then each
    other value of one parameter at a time (the full product of a suite like `bench_batch`'s
    would compile hundreds of programs)."""
    first = tuple(c[0] for c in choices)
    yield first
    for i, values in enumerate(choices):
        for v in values[1:]:
            yield first[:i] + (v,) + first[i + 1 :]


@pytest.fixture
def few_training_steps(monkeypatch):
    """The DEQ benchmark at its smallest size too: a few adam steps, not 200."""
    from benchmarks import bench_fixed_point

    monkeypatch.setattr(bench_fixed_point, "TRAIN_STEPS", 3)
    monkeypatch.setattr(bench_fixed_point, "TRAINED_STEPS", 3)


@pytest.mark.parametrize("cls, methods, params", list(_cases()))
def test_benchmark_runs_once(cls, methods, params, few_training_steps, monkeypatch):
    bench = cls()
    args = params
    if hasattr(bench, "setup_cache"):
        # As asv: setup_cache once, its result first in every call; here for this case only.
        monkeypatch.setattr(cls, "params", tuple([v] for v in params))
        args = (bench.setup_cache(), *params)
    try:
        bench.setup(*args) if hasattr(bench, "setup") else None
    except NotImplementedError:
        return  # asv's "not applicable" (e.g. forward mode through GradientClip)
    for method in methods:
        result = getattr(bench, method)(*args)
        if method.startswith("track_"):
            # NaN: asv's "not applicable" (the roofline of a compile time).
            assert isinstance(result, float) and (result >= 0 or math.isnan(result))
        elif method.startswith("timeraw_"):
            compile(result, method, "exec")  # a program asv runs in a fresh process


def _headline_only_programs():
    """The programs of the headline's timed rows whose classes asv does not run (underscored:
    `bench_headline.Ratios` times them, interleaved), each once."""
    from benchmarks.headline import TIMED

    found = {}
    for row in TIMED:
        for name, params in (row.numerator, row.denominator):
            if name.split(".")[1].startswith("_"):
                found.setdefault(f"{name}{sorted(params.items())}", (name, params))
    return found


@pytest.fixture(scope="module")
def programs():
    """One `Programs` for the module's cases, as in `Ratios` (the DEQ trained 3 steps)."""
    from benchmarks import bench_fixed_point
    from benchmarks.interleaved import Programs

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bench_fixed_point, "TRAINED_STEPS", 3)
        yield Programs()


@pytest.mark.parametrize(
    "name, params", list(_headline_only_programs().values()), ids=list(_headline_only_programs())
)
def test_every_headline_only_program_runs_on_cpu(programs, name, params):
    """The programs only the headline times cannot rot either: each is set up and called
    once, on the CPU, where every timed row is measured."""
    programs.call(name, params, "cpu")()


def test_asv_check():
    out = subprocess.run(
        [sys.executable, "-m", "asv", "check", "--python=same"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def _block(readme: str, marker: str) -> str:
    block = readme.split(f"<!-- {marker} -->\n", 1)[1].split(f"<!-- /{marker} -->", 1)[0]
    return "\n".join(line for line in block.splitlines() if line.startswith("|"))


def test_readme_tables_are_generated_from_the_committed_results():
    from benchmarks import headline

    benchmarks = headline.discover()
    results = ROOT / ".asv" / "results"
    cpu = headline.Results(results, "cpu-2core-dev", benchmarks)
    gpu = headline.Results(results, "gpu-h100", benchmarks)
    readme = (ROOT / "README.md").read_text()
    assert _block(readme, "headline") == headline.table({"cpu": cpu, "gpu": gpu})
    assert _block(readme, "batch") == headline.batch_table(cpu)


def test_headline_refuses_results_of_another_version_of_a_benchmark(tmp_path):
    """A result measured by other code under the same name is "stale", not a number."""
    import json
    import shutil

    from benchmarks import headline

    benchmarks = headline.discover()
    shutil.copytree(ROOT / ".asv" / "results" / "cpu-2core-dev", tmp_path / "m")
    name = "bench_baseline.AgainstCourse.time_closed_over"
    params = {"problem": "Deliciousness", "impl": "cakejax"}
    assert isinstance(headline.Results(tmp_path, "m", benchmarks).get(name, params, "cpu"), float)
    for path in (tmp_path / "m").glob("*.json"):
        run = json.loads(path.read_text())
        if name in run.get("results", {}):
            run["results"][name][run["result_columns"].index("version")] = "0" * 64
            path.write_text(json.dumps(run))
    assert headline.Results(tmp_path, "m", benchmarks).get(name, params, "cpu") == headline.STALE


def test_every_setup_cache_has_its_own_key():
    """asv keys a `setup_cache` result by the file and line of its definition, and hands one
    result to every class whose `setup_cache` has that key: classes sharing an inherited one
    would all get the first class's data, unless the class that defines it says that its
    subclasses read one result (`shared_setup_cache`)."""
    from asv_runner.benchmarks._base import get_setup_cache_key

    owners = {}
    for name in MODULES:
        module = importlib.import_module(f"benchmarks.{name}")
        for cls_name, cls in vars(module).items():
            if (
                isinstance(cls, type)
                and cls.__module__ == module.__name__
                and not cls_name.startswith("_")
                and hasattr(cls, "setup_cache")
            ):
                key = get_setup_cache_key(cls.setup_cache)
                defining = next(c for c in cls.__mro__ if "setup_cache" in vars(c))
                assert key not in owners or getattr(defining, "shared_setup_cache", False), (
                    f"{cls_name} shares {key} with {owners.get(key)}"
                )
                owners[key] = cls_name
    assert len(owners) >= 7


def test_the_deq_implementations_compute_the_same_gradient():
    """The DEQ benchmark compares like with like: the hand-written layer, optimistix and every
    cakejax setting give the same gradient of the training loss (each solve to 1e-6)."""
    import equinox as eqx
    import numpy as np
    import optax

    from benchmarks import bench_fixed_point as bench

    (x, y), _ = bench.digits()

    def gradient(impl):
        model = bench.init_deq(impl)

        def loss(model):
            logits = jax.vmap(model)(x[:32])
            return optax.softmax_cross_entropy_with_integer_labels(logits, y[:32]).mean()

        return eqx.filter(eqx.filter_grad(loss)(model), eqx.is_array)

    reference = gradient("cakejax")
    for impl in bench.DEQ_IMPLS[1:]:
        for ours, theirs in zip(
            jax.tree_util.tree_leaves(gradient(impl)),
            jax.tree_util.tree_leaves(reference),
            strict=True,
        ):
            scale = float(np.max(np.abs(theirs)))
            np.testing.assert_allclose(ours, theirs, atol=1e-4 * scale, err_msg=impl)
