"""The README's headline ratios as benchmarks of their own: each timed row of
`headline.RATIOS` measured with cakejax and its baseline in one process, interleaved, 7
samples a side (`interleaved.measure`), tracked as the median ratio and its quartiles, with
cakejax's program's place under the machine's roofline and its fingerprint (`roofline`).
Their graphs answer "did cakejax get slower against what it replaces?" at a glance, one line
per row; `python -m benchmarks.compare BASE HEAD` flags the rows that did."""

import math

from . import roofline
from ._common import BACKENDS, device, Suite
from .headline import TIMED
from .interleaved import measure, Programs


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


def _program(programs: Programs, row, backend: str, seconds: float, roofs) -> dict:
    """cakejax's program of `row` (its numerator's, or its denominator's where cakejax is the
    denominator): the fingerprint of its optimised HLO and, for a steady state that took
    `seconds` a call, its fraction of the roofline and its flops per byte. Empty where the
    row runs no single program (a Python loop, a fresh interpreter)."""
    side = row.numerator if row.slower == "up" else row.denominator
    program = programs.program(*side, backend)
    if program is None:
        return {}
    jitted, args = program
    # The executable a compile-time benchmark compiled last, or the one the calls ran, from
    # JAX's cache (eqx.filter_jit's Compiled wraps JAX's).
    compiled = programs.last_compiled(*side, backend) or jitted.lower(*args).compile()
    compiled = getattr(compiled, "compiled", compiled)
    found = {"fingerprint": roofline.as_number(roofline.fingerprint(compiled))}
    if "compile" not in side[0].rsplit(".", 1)[1]:
        nbytes, flops = roofline.cost(compiled)
        found["roofline"] = roofline.fraction(nbytes, flops, seconds, *roofs)[0]
        found["intensity"] = flops / nbytes if nbytes else 0.0
    return found


class Ratios(Suite):
    """Every timed headline row, cakejax's program / its baseline's, on each backend this
    machine has. All rows are measured once, in `setup_cache` (one process: each program is
    compiled once, however many rows share it); the tracks read the result: the ratio, its
    quartiles, and each side's median time of a call (the programs that only the headline
    compares, compile times and the DEQ's train steps, are timed here only). Beside each
    ratio, cakejax's program of the row: its fraction of the roofline (XLA's bytes and flops
    over its median time in the interleaved samples, against `Machine`'s roofs measured in
    the same process), its arithmetic intensity (flops per byte: above the machine's peak
    flops / bandwidth it is compute-bound), and its fingerprint."""

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
        found = {}
        rows, backends = self.params
        for backend in backends:
            try:
                dev = device(backend)
            except NotImplementedError:
                continue
            roofs = (roofline.memory_bandwidth(dev), roofline.peak_flops(dev))
            for row in TIMED:
                if row.label not in rows:
                    continue
                try:
                    ratio = measure(
                        programs.call(*row.numerator, backend),
                        programs.call(*row.denominator, backend),
                    )
                except NotImplementedError:
                    continue
                seconds = ratio.seconds[0 if row.slower == "up" else 1]
                found[row.label, backend] = {
                    "ratio": ratio,
                    **_program(programs, row, backend, seconds, roofs),
                }
        return found

    setup_cache.timeout = 1800

    def setup(self, found, row, backend):
        if (row, backend) not in found:
            raise NotImplementedError(f"{row!r} is not measured on {backend} here")

    def track_ratio(self, found, row, backend):
        return found[row, backend]["ratio"].median

    def track_ratio_q1(self, found, row, backend):
        return found[row, backend]["ratio"].low

    def track_ratio_q3(self, found, row, backend):
        return found[row, backend]["ratio"].high

    # Each side's median time of a call in the interleaved samples: the absolute timings of
    # the programs the headline compares (asv times none of them again).
    def track_numerator_seconds(self, found, row, backend):
        return found[row, backend]["ratio"].seconds[0]

    def track_denominator_seconds(self, found, row, backend):
        return found[row, backend]["ratio"].seconds[1]

    def track_program_fingerprint(self, found, row, backend):
        return found[row, backend].get("fingerprint", math.nan)

    # NaN is asv's "not applicable": a compile time has no roofline.
    def track_roofline(self, found, row, backend):
        return found[row, backend].get("roofline", math.nan)

    def track_flops_per_byte(self, found, row, backend):
        return found[row, backend].get("intensity", math.nan)

    track_ratio.unit = "ratio"
    track_ratio_q1.unit = "ratio"
    track_ratio_q3.unit = "ratio"
    track_numerator_seconds.unit = "seconds"
    track_denominator_seconds.unit = "seconds"
    track_program_fingerprint.unit = "hash"
    track_roofline.unit = "fraction"
    track_flops_per_byte.unit = "flops/byte"
