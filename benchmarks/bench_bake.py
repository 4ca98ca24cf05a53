"""Recipe optimisation: one cake, many customers, and customers per second against the
number of devices."""

import json
import os
import subprocess
import sys
import textwrap

import equinox as eqx
import jax.numpy as jnp

import cakejax as cj
from cakejax.examples import cake

from ._common import _Timed, BACKENDS, put, Suite, xla_cost


def _customers(n):
    ideals = jnp.linspace(8.0, 12.0, n)
    fluffy = jnp.linspace(4.0, 6.0, n)
    return eqx.filter_vmap(lambda s, f: cj.Deliciousness(ideal_sweetness=s,
                                                          ideal_fluffiness=f))(ideals, fluffy)


class Recipes(_Timed):
    """`optimise_recipe` on the course's cake (N = 1) and `optimise_recipes` for N customers
    with their own ideals (up to 10⁶, on one CPU: `RecipesMemory` is its memory), jitted;
    throughput is N over this time. The headline's scaling row is 10⁵ against 100 (a call
    for 10⁶ takes 20–27 s here, too long to repeat in an interleaved measurement)."""

    params = ([1, 100, 1000, 100_000, 1_000_000], list(BACKENDS))
    param_names = ("customers", "backend")
    timeout = 600

    @staticmethod
    def problem(customers, backend):
        x0 = cake()
        if customers == 1:
            return (lambda s, x: cj.optimise_recipe(s, x).recipe,
                    put(backend, (cj.Deliciousness(), x0)))
        return (lambda s, x: cj.optimise_recipes(s, x).recipe,
                put(backend, (_customers(customers), x0)))


class RecipesMemory(Suite):
    """XLA's temporary memory for 10⁶ customers' recipes at once on one CPU (compiled, not
    run: a run takes minutes here; `RecipesPerDevice` measures the throughput)."""

    params = ([1_000_000],)
    param_names = ("customers",)
    timeout = 600

    def setup_cache(self):
        return {n: xla_cost(lambda s, x: cj.optimise_recipes(s, x).recipe, _customers(n),
                            cake()) for n in self.params[0]}

    def track_temp_bytes(self, costs, customers):
        return costs[customers]["temp bytes"]

    track_temp_bytes.unit = "bytes"


_PER_DEVICE = textwrap.dedent('''
    import json, statistics, sys, time
    import equinox as eqx, jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh
    import cakejax as cj
    from cakejax.examples import cake
    devices, n = int(sys.argv[1]), int(sys.argv[2])
    mesh = Mesh(np.asarray(jax.devices()[:devices]), ("customers",))
    scores = eqx.filter_vmap(lambda s, f: cj.Deliciousness(ideal_sweetness=s,
        ideal_fluffiness=f))(jnp.linspace(8.0, 12.0, n), jnp.linspace(4.0, 6.0, n))
    x0 = cake()
    jax.block_until_ready(cj.optimise_recipes(scores, x0, mesh=mesh).recipe)  # compile
    times = []
    for _ in range(3):
        start = time.perf_counter()
        jax.block_until_ready(cj.optimise_recipes(scores, x0, mesh=mesh).recipe)
        times.append(time.perf_counter() - start)
    print(json.dumps(n / statistics.median(times)))
''')


class RecipesPerDevice(Suite):
    """Customers per second for 4096 customers sharded over 1, 2, 4 and 8 virtual CPU
    devices (`--xla_force_host_platform_device_count=8`, in a subprocess each, since the
    device count is fixed when JAX starts). They share this machine's cores, so the honest
    target on a CPU is no loss from sharding: at least 0.9x one device."""

    params = ([1, 2, 4, 8],)
    param_names = ("devices",)
    timeout = 900

    def setup_cache(self):
        env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
        rates = {}
        for devices in self.params[0]:
            out = subprocess.run([sys.executable, "-c", _PER_DEVICE, str(devices), "4096"],
                                 env={**os.environ, **env}, capture_output=True, text=True,
                                 check=True)
            rates[devices] = json.loads(out.stdout.strip().splitlines()[-1])
        return rates

    def track_customers_per_second(self, rates, devices):
        return rates[devices]

    track_customers_per_second.unit = "customers/s"
