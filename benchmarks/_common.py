"""Shared machinery of the asv suites: backends, a cache of compiled executables, XLA cost
metrics, and the problems the suites time."""

import functools
import itertools

import jax
import jax.numpy as jnp


BACKENDS = ("cpu", "gpu")

#: Batch sizes for a GPU only: enough memory traffic to rise above the dispatch cost there
#: (an H100 moves 10⁸ float32 in about a tenth of a millisecond), where 10⁶ measures the
#: launch. Skipped on a CPU, where one call takes seconds.
GPU_SIZES = [100_000_000]


def sized_for(backend: str, n: int) -> None:
    """Skips a GPU-only size elsewhere (asv's "not applicable")."""
    if n in GPU_SIZES and backend != "gpu":
        raise NotImplementedError(f"N = {n:,} is sized for a GPU, not {backend}")

_COMPILED: dict = {}


def device(backend: str):
    """The first device of `backend`; an unavailable backend skips the benchmark (asv treats
    `NotImplementedError` raised in setup as "not applicable", not as a failure)."""
    try:
        return jax.devices(backend)[0]
    except RuntimeError as error:
        raise NotImplementedError(f"no {backend} backend here: {error}") from None


def put(backend: str, tree):
    """`tree`'s arrays committed to `backend`, so that jitted functions run there (and already
    there: see `Suite`)."""
    return jax.block_until_ready(jax.device_put(tree, device(backend)))


def compiled(key, make):
    """`make()` once per `key`, then from the cache: asv re-runs `setup` before every sample,
    and a benchmark that recompiled there would measure compilation, not the steady state."""
    if key not in _COMPILED:
        _COMPILED[key] = make()
    return _COMPILED[key]


def warm(fn, *args):
    """`jax.jit(fn)`, called once (compiled and run) so that later calls are steady state."""
    jitted = jax.jit(fn)
    jax.block_until_ready(jitted(*args))
    return jitted


def compile_fresh(fn, *args):
    """Traces, lowers and compiles `fn` from scratch: JAX's caches are cleared first, since a
    reused cache would time a dictionary lookup."""
    jax.clear_caches()
    return jax.jit(fn).lower(*args).compile()


def xla_cost(fn, *args) -> dict[str, float]:
    """Deterministic metrics of the compiled executable: flops and bytes accessed from XLA's
    cost analysis, temporary buffer bytes from its memory analysis."""
    executable = jax.jit(fn).lower(*args).compile()
    cost = executable.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0]
    memory = executable.memory_analysis()
    return {
        "flops": float(cost.get("flops", 0.0)),
        "bytes accessed": float(cost.get("bytes accessed", 0.0)),
        "temp bytes": float(getattr(memory, "temp_size_in_bytes", 0)),
    }


class Suite:
    """Settings shared by every benchmark: one process per benchmark (each starts by compiling,
    so a second process mostly re-measures compilation noise) and one round (asv's default of
    two runs the whole suite twice), up to ten samples or five seconds; and a `setup` that
    waits for every array it made.

    JAX dispatches asynchronously: an array a `setup` creates may still be computing when
    `setup` returns, and the first timed call would then wait for it and be charged for it.
    So each subclass's `setup` is wrapped to block on the arrays it leaves on the instance."""

    processes = 1
    rounds = 1
    repeat = (3, 10, 5.0)
    warmup_time = 0.05

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        setup = cls.__dict__.get("setup")
        if setup is None:
            return

        @functools.wraps(setup)
        def settled_setup(self, *params):
            setup(self, *params)
            jax.block_until_ready([v for v in vars(self).values() if not callable(v)])

        cls.setup = settled_setup

    def program(self, method: str):
        """(jitted function, arguments): the program that `method` runs (its steady state, or
        what its compile-time benchmark compiles), for its cost analysis and fingerprint
        (`bench_headline.Ratios`); None where it runs no single program. Read from the
        attributes `setup` left: `jitted`, `step` or `fn`, with `args`."""
        args = getattr(self, "args", None)
        if args is None:
            return None
        for compiled_name in ("jitted", "step"):
            if hasattr(self, compiled_name):
                return getattr(self, compiled_name), args
        if hasattr(self, "fn"):
            return jax.jit(self.fn), args
        return None


class _Timed(Suite):
    """Steady state of the jitted `self.problem(*params)`, a (function, arguments): compiled
    and run once in `setup` (cached across asv's samples), then timed with every output
    blocked on."""

    def setup(self, *params):
        self.fn, self.args = self.problem(*params)
        self.jitted = compiled((type(self).__name__,) + params,
                               lambda: warm(self.fn, *self.args))

    def time_steady_state(self, *params):
        run(self.jitted, *self.args)


def cost_tracks(timed: type) -> type:
    """A base class of `track_` benchmarks of XLA's cost metrics (flops, bytes accessed,
    temporary bytes) of `timed.problem(*params)`, the (function, arguments) that the suite
    `timed` times. These do not move with machine noise, so tight regression thresholds catch
    what timings cannot.

    Each problem is compiled once: asv runs `setup_cache` once, in one process, and hands its
    result to every metric's process (a `track_` that compiled in its own `setup` would compile
    each problem three times, once per metric). asv keys that cache by the file and line where
    `setup_cache` is written, so each subclass writes its own one-line
    `def setup_cache(self): return self.costs()` (one defined here would be shared by every
    subclass: the first one's costs would be served to all). The subclass may narrow `params`
    (say, to the largest size)."""

    class Costs(Suite):
        params = timed.params
        param_names = timed.param_names

        def costs(self):
            costs = {}
            for combo in itertools.product(*self.params):
                try:
                    fn, args = timed.problem(*combo)
                except NotImplementedError:
                    continue
                costs[combo] = xla_cost(fn, *args)
            return costs

        def setup(self, costs, *params):
            if params not in costs:
                raise NotImplementedError(f"no such problem here: {params}")

        def track_flops(self, costs, *params):
            return costs[params]["flops"]

        def track_bytes_accessed(self, costs, *params):
            return costs[params]["bytes accessed"]

        def track_temp_bytes(self, costs, *params):
            return costs[params]["temp bytes"]

        track_flops.unit = "flops"
        track_bytes_accessed.unit = "bytes"
        track_temp_bytes.unit = "bytes"

    return Costs


def run(fn, *args):
    jax.block_until_ready(fn(*args))


def ones(shape, backend):
    return put(backend, jnp.ones(shape))
