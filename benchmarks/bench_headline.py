"""The README's headline ratios as benchmarks of their own: each timed row of
`headline.RATIOS` measured with cakejax and its baseline in one process, interleaved, 7
samples a side (`interleaved.measure`), tracked as the median ratio and its quartiles. Their
graphs answer "did cakejax get slower against what it replaces?" at a glance, one line per
row; `python -m benchmarks.compare BASE HEAD` flags the rows that did."""

import math
import statistics

from . import roofline
from ._common import BACKENDS, device, Suite
from .headline import TIMED
from .interleaved import _number, _per_call, measure, Programs, SAMPLES


class Ratios(Suite):
    """Every timed headline row, cakejax's program / its baseline's, on each backend this
    machine has. All rows are measured once, in `setup_cache` (one process: each program is
    compiled once, however many rows share it); the tracks read the result."""

    params = ([label for label, *_ in TIMED], list(BACKENDS))
    param_names = ("row", "backend")
    timeout = 1800
    #: What tests/test_benchmarks.py runs: a steady-state row and a compile-time row (each
    #: row's programs are run there already, by their own suites' cases).
    smoke_params = (
        [TIMED[0].label, next(row.label for row in TIMED if "compile time" in row.label)],
        ["cpu"],
    )

    def setup_cache(self):
        programs = Programs()
        ratios = {}
        rows, backends = self.params
        for backend in backends:
            try:
                device(backend)
            except NotImplementedError:
                continue
            for label, (num, num_params), (den, den_params), _, _ in TIMED:
                if label not in rows:
                    continue
                try:
                    ratios[label, backend] = measure(
                        programs.call(num, num_params, backend),
                        programs.call(den, den_params, backend),
                    )
                except NotImplementedError:
                    continue
        return ratios

    setup_cache.timeout = 1800

    def setup(self, ratios, row, backend):
        if (row, backend) not in ratios:
            raise NotImplementedError(f"{row!r} is not measured on {backend} here")

    def track_ratio(self, ratios, row, backend):
        return ratios[row, backend].median

    def track_ratio_q1(self, ratios, row, backend):
        return ratios[row, backend].low

    def track_ratio_q3(self, ratios, row, backend):
        return ratios[row, backend].high

    track_ratio.unit = "ratio"
    track_ratio_q1.unit = "ratio"
    track_ratio_q3.unit = "ratio"


class Machine(Suite):
    """What the machine can deliver, the roofline's two roofs: memory bandwidth (a STREAM
    triad) and peak float32 flops (a large matrix product), on each backend it has."""

    params = (list(BACKENDS),)
    param_names = ("backend",)

    def setup_cache(self):
        roofs = {}
        for backend in BACKENDS:
            try:
                dev = device(backend)
            except NotImplementedError:
                continue
            roofs[backend] = (roofline.memory_bandwidth(dev), roofline.peak_flops(dev))
        return roofs

    def setup(self, roofs, backend):
        if backend not in roofs:
            raise NotImplementedError(f"no {backend} backend here")

    def track_memory_bandwidth(self, roofs, backend):
        return roofs[backend][0]

    def track_peak_flops(self, roofs, backend):
        return roofs[backend][1]

    track_memory_bandwidth.unit = "bytes/s"
    track_peak_flops.unit = "flops/s"


def _steady(call) -> float:
    """The median time of a call, over `SAMPLES` samples of at least 20 ms."""
    number = _number(call, 0.02)
    return statistics.median(_per_call(call, number) for _ in range(SAMPLES))


class Roofline(Suite):
    """For cakejax's program of each timed headline row (the numerator's, or the
    denominator's where cakejax is the denominator): the fingerprint of its optimised HLO
    and, for a steady state, its fraction of the roofline (XLA's bytes and flops over its
    median time, against `Machine`'s roofs measured in the same process) and its arithmetic
    intensity (flops per byte: above the machine's peak flops / bandwidth it is
    compute-bound). Rows that run no single program (a Python loop, a fresh interpreter)
    have neither."""

    params = ([label for label, *_ in TIMED], list(BACKENDS))
    param_names = ("row", "backend")
    timeout = 1800
    smoke_params = Ratios.smoke_params

    def setup_cache(self):
        programs = Programs()
        found = {}
        rows, backends = self.params
        for backend in backends:
            try:
                dev = device(backend)
            except NotImplementedError:
                continue
            bandwidth, peak = roofline.memory_bandwidth(dev), roofline.peak_flops(dev)
            for row in TIMED:
                if row.label not in rows:
                    continue
                ours = row.numerator if row.slower == "up" else row.denominator
                try:
                    program = programs.program(*ours, backend)
                except NotImplementedError:
                    continue
                if program is None:
                    continue
                jitted, args = program
                compiled = jitted.lower(*args).compile()
                # eqx.filter_jit's Compiled wraps JAX's.
                compiled = getattr(compiled, "compiled", compiled)
                nbytes, flops = roofline.cost(compiled)
                entry = {"fingerprint": roofline.as_number(roofline.fingerprint(compiled))}
                if "compile" not in ours[0].rsplit(".", 1)[1]:
                    seconds = _steady(programs.call(*ours, backend))
                    entry["roofline"] = roofline.fraction(nbytes, flops, seconds, bandwidth,
                                                          peak)[0]
                    entry["intensity"] = flops / nbytes if nbytes else 0.0
                found[row.label, backend] = entry
        return found

    setup_cache.timeout = 1800

    def setup(self, found, row, backend):
        if (row, backend) not in found:
            raise NotImplementedError(f"{row!r} runs no single program on {backend} here")

    def track_program_fingerprint(self, found, row, backend):
        return found[row, backend]["fingerprint"]

    # NaN is asv's "not applicable": a compile time has no roofline.
    def track_roofline(self, found, row, backend):
        return found[row, backend].get("roofline", math.nan)

    def track_flops_per_byte(self, found, row, backend):
        return found[row, backend].get("intensity", math.nan)

    track_program_fingerprint.unit = "hash"
    track_roofline.unit = "fraction"
    track_flops_per_byte.unit = "flops/byte"
