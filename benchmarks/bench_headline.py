"""The README's headline ratios as benchmarks of their own: each timed row of
`headline.RATIOS` measured with cakejax and its baseline in one process, interleaved, 7
samples a side (`interleaved.measure`), tracked as the median ratio and its quartiles. Their
graphs answer "did cakejax get slower against what it replaces?" at a glance, one line per
row; `python -m benchmarks.compare BASE HEAD` flags the rows that did."""

from ._common import BACKENDS, device, Suite
from .headline import TIMED
from .interleaved import measure, Programs


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
