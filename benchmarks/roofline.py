r"""Where a program stands against what the machine can deliver, and which program it was.

**Roofline.** A program that moves $B$ bytes and does $F$ flops in $t$ seconds on a machine
of memory bandwidth $\beta$ and peak rate $\pi$ uses $B / (t \beta)$ of the memory system
and $F / (t \pi)$ of the arithmetic; the larger of the two is its fraction of the roofline,
and which one it is says whether it is memory- or compute-bound. $B$ and $F$ are XLA's cost
analysis of the compiled executable (bytes accessed by each fused operation, flops); $\beta$
is measured here by a STREAM triad ($a = b + s c$ on three arrays of 2²⁵ float32, 384 MiB
moved a call), $\pi$ by a float32 matrix product (2048 × 2048 on CPU, 8192 × 8192 on a GPU),
each the best of 7 calls.

**Fingerprint.** A hash of the optimised HLO of the compiled executable, with what names its
source (files, lines, function and operation names) removed: equal for the same program on
any machine and in any process, changed when the program XLA runs changed. Tracked beside a
time, it says whether a step in the time's graph came with a new program or from the machine.
"""

import hashlib
import re
import time

import jax
import jax.numpy as jnp


#: Elements of each STREAM array: 128 MiB in float32, far beyond any cache.
STREAM_ELEMENTS = 2**25

#: The side of the matrices of the peak-rate product, by backend.
MATMUL_SIDE = {"cpu": 2048, "gpu": 8192}

_METADATA = re.compile(r",? metadata=\{[^{}]*\}")


def _best(fn, *args, calls: int = 7) -> float:
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(calls):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return best


def memory_bandwidth(device) -> float:
    """Bytes per second of a STREAM triad on `device` (2 reads and 1 write of 2²⁵ float32)."""
    b, c = jax.device_put((jnp.ones(STREAM_ELEMENTS), jnp.full(STREAM_ELEMENTS, 2.0)), device)
    seconds = _best(jax.jit(lambda b, c: b + 3.0 * c), b, c)
    return 3 * 4 * STREAM_ELEMENTS / seconds


def peak_flops(device) -> float:
    """Float32 flops per second of a large matrix product on `device`."""
    n = MATMUL_SIDE[device.platform if device.platform == "cpu" else "gpu"]
    a = jax.device_put(jnp.ones((n, n)) / n, device)
    seconds = _best(jax.jit(lambda a: a @ a), a)
    return 2 * n**3 / seconds


def cost(compiled) -> tuple[float, float]:
    """(bytes accessed, flops) of a compiled executable, from XLA's cost analysis."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0]
    return float(analysis.get("bytes accessed", 0.0)), float(analysis.get("flops", 0.0))


def program_text(compiled) -> str:
    """The executable's optimised HLO without what names its source: the module's name (the
    Python function's), the tables of files, functions and stack frames, each instruction's
    metadata, and the names of instructions, parameters and computations."""
    header, _, body = compiled.as_text().partition("\n")
    lines = body.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(("%", "ENTRY"))), 0)
    header = re.sub(r"^HloModule \S+", "HloModule", header)
    text = _METADATA.sub("", "\n".join(lines[start:]))
    # Names are the source's too (a parameter's is its Python argument's): each becomes its
    # order of appearance, and a computation's signature keeps its types only.
    text = re.sub(
        r"^((?:ENTRY )?%\S+ \()(.*)(\) -> .*\{)$",
        lambda m: m[1] + re.sub(r"[\w.\-]+: ", "", m[2]) + m[3],
        text,
        flags=re.MULTILINE,
    )
    names: dict[str, str] = {}
    text = re.sub(r"%[\w.\-]+", lambda m: names.setdefault(m[0], f"%{len(names)}"), text)
    return header + "\n" + text


def fingerprint(compiled) -> str:
    """The SHA-256 of `program_text`."""
    return hashlib.sha256(program_text(compiled).encode()).hexdigest()


def as_number(digest: str) -> float:
    """The first 52 bits of a hex digest as a float (exact: a float64 has 53), for asv, whose
    tracks are numbers."""
    return float(int(digest[:13], 16))


def fraction(nbytes: float, flops: float, seconds: float, bandwidth: float, peak: float):
    """(fraction of the roofline, "memory" or "compute"): the larger of the memory system's
    and the arithmetic's share used."""
    memory, compute = nbytes / seconds / bandwidth, flops / seconds / peak
    return (memory, "memory") if memory >= compute else (compute, "compute")
