r"""Ratios that hold: two programs timed in one process, interleaved.

A ratio read off two asv timings compares two processes, each with its own start, warm-up and
slice of the machine's noise; with asv's 1–3 samples a side its significance test cannot fire,
and a benchmark whose call is a few microseconds measures the harness (the headline
"Deliciousness, closed over" read 4.52× from asv's timings and 1.10× interleaved). Here both
programs run in one process, in alternating order (A B, then B A, so that a drift charges
both), each sample long enough to swamp the timer and the dispatch (`number` calls, chosen so
that a sample takes at least `min_time`), with the garbage collector off while timing, as
`timeit` does. A sample $i$ gives the paired ratio $r_i = a_i / b_i$ of two neighbouring
measurements; the estimate is the median of the $r_i$ and its spread their quartiles, which
`benchmarks.compare` uses to tell a change from the noise of two runs.
"""

import dataclasses
import gc
import importlib
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable


#: Samples a side: the fewest with which asv's Mann–Whitney test at p < 0.002 can fire.
SAMPLES = 7


@dataclasses.dataclass(frozen=True)
class Ratio:
    """The median of the paired ratios, their quartiles, the ratios themselves, and the
    median time of a call of each side (seconds)."""

    median: float
    low: float
    high: float
    samples: tuple[float, ...]
    seconds: tuple[float, float]


def _per_call(fn: Callable[[], object], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def _number(fn: Callable[[], object], min_time: float, number: int = 1) -> int:
    """How many calls make a sample of at least `min_time` seconds, counting up from
    `number` (the function warmed up already)."""
    while True:
        elapsed = _per_call(fn, number) * number
        if elapsed >= min_time:
            return number
        number = max(2 * number, math.ceil(1.2 * number * min_time / max(elapsed, 1e-9)))


def measure(
    numerator: Callable[[], object],
    denominator: Callable[[], object],
    *,
    samples: int = SAMPLES,
    min_time: float = 0.02,
) -> Ratio:
    """The ratio of the time of a call of `numerator` to one of `denominator` (each a
    function of no arguments that blocks until its work is done), from `samples` interleaved
    pairs of samples of at least `min_time` seconds each.

    Each side's first call is timed. One that alone lasts `min_time` makes a sample of one
    call (a compilation, a fresh interpreter, a large batch), tentatively: it is checked
    against the first sample, since the first call may have compiled what later calls reuse.
    A shorter one is a warm-up, and the calls that make a sample are counted. Where both
    sides are `Cold` (each call clears JAX's caches and compiles, or starts an interpreter:
    nothing to warm) and their first calls last `min_time`, those are the first pair of
    samples, A then B."""
    if samples < 2:
        raise ValueError(f"measure: samples must be at least 2 (for quartiles), got {samples}")
    fns = (numerator, denominator)
    numbers, firsts = [], []
    for fn in fns:
        start = time.perf_counter()
        fn()
        firsts.append(time.perf_counter() - start)
        numbers.append(1 if firsts[-1] >= min_time else _number(fn, min_time))
    times: list[list[float]] = [[], []]
    checked = all(isinstance(fn, Cold) for fn in fns) and numbers == [1, 1]
    if checked:
        times = [[firsts[0]], [firsts[1]]]
    enabled = gc.isenabled()
    gc.disable()
    try:
        while len(times[0]) < samples:
            for side in (0, 1) if len(times[0]) % 2 == 0 else (1, 0):
                times[side].append(_per_call(fns[side], numbers[side]))
            if not checked:
                # A side whose first call compiled and whose calls are short: count its calls
                # now, and start the samples again.
                checked = True
                short = [s for s in (0, 1) if times[s][0] * numbers[s] < min_time]
                for s in short:
                    numbers[s] = _number(fns[s], min_time, numbers[s])
                if short:
                    times = [[], []]
    finally:
        if enabled:
            gc.enable()
    ratios = [a / b for a, b in zip(*times, strict=True)]
    low, _, high = statistics.quantiles(ratios, n=4, method="inclusive")
    seconds = (statistics.median(times[0]), statistics.median(times[1]))
    return Ratio(statistics.median(ratios), low, high, tuple(ratios), seconds)


@dataclasses.dataclass(frozen=True)
class Cold:
    """A call that is cold by construction: a compile time (JAX's caches cleared first) or a
    fresh interpreter. `measure` spends no warm-up on it."""

    fn: Callable[[], object]

    def __call__(self) -> object:
        return self.fn()


def _raw(code: str) -> Callable[[], object]:
    """A `timeraw_` benchmark's program, run in a fresh interpreter. Its time includes the
    interpreter's start (about 20 ms here, against seconds for importing JAX), as a user's cold
    start does; asv's own `timeraw_` leaves it out."""
    return lambda: subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


class Programs:
    """The asv benchmarks of `benchmarks/`, set up in this process: `call(name, params,
    backend)` is a function of no arguments that runs the benchmark `name` (module.Class.method)
    at `params` once. Each class's `setup_cache` runs once and each (class, parameters) is set
    up once, however many rows share it."""

    def __init__(self):
        self._caches: dict = {}
        self._instances: dict = {}

    def _setup(self, name: str, params: dict, backend: str):
        """(benchmark instance, method name, arguments) of `name` at `params`, set up."""
        module, cls_name, method = name.split(".")
        cls = getattr(importlib.import_module(f"benchmarks.{module}"), cls_name)
        names = tuple(getattr(cls, "param_names", ()))
        if "backend" in names:
            params = {**params, "backend": backend}
        elif backend != "cpu":
            raise NotImplementedError(f"{name} runs on the CPU only")
        args = tuple(params[n] for n in names)
        if hasattr(cls, "setup_cache"):
            if cls not in self._caches:
                self._caches[cls] = cls().setup_cache()
            args = (self._caches[cls], *args)
        key = (cls, args[len(args) - len(names) :])
        if key not in self._instances:
            bench = cls()
            if hasattr(bench, "setup"):
                bench.setup(*args)
            self._instances[key] = bench
        return self._instances[key], method, args

    def call(self, name: str, params: dict, backend: str) -> Callable[[], object]:
        bench, method, args = self._setup(name, params, backend)
        bound = getattr(bench, method)
        if method.startswith("timeraw_"):
            return Cold(_raw(bound(*args)))
        if "compile" in method:
            return Cold(lambda: bound(*args))
        return lambda: bound(*args)

    def last_compiled(self, name: str, params: dict, backend: str):
        """The executable that the compile-time benchmark `name` compiled last, or None."""
        bench, _, _ = self._setup(name, params, backend)
        return getattr(bench, "last_compiled", None)

    def program(self, name: str, params: dict, backend: str):
        """(jitted function, arguments) that the benchmark runs (`Suite.program`), or None."""
        bench, method, _ = self._setup(name, params, backend)
        return bench.program(method)
