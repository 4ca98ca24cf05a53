"""optimise_recipes: one recipe per customer, on one device and sharded over eight (virtual
CPU devices, in a subprocess so that the rest of the suite keeps its single device)."""

import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cakejax as cj

from .helpers import run_python


def _scores(n):
    ideals, fluffy = jnp.linspace(8.0, 12.0, n), jnp.linspace(4.0, 6.0, n)
    return eqx.filter_vmap(lambda s, f: cj.Deliciousness(ideal_sweetness=s, ideal_fluffiness=f))(
        ideals, fluffy
    )


def test_batch_equals_one_customer_at_a_time(f64):
    scores = _scores(4)
    x0 = jnp.asarray([1.0, 3.0, 2.0, 1.5])
    batch = cj.optimise_recipes(scores, x0)
    for i in range(4):
        alone = cj.optimise_recipe(jax.tree_util.tree_map(lambda a, i=i: a[i], scores), x0)
        np.testing.assert_allclose(batch.recipe[i], alone.recipe, rtol=1e-12, atol=1e-15)
        assert batch.steps[i] == alone.steps
    # One start per customer works too.
    starts = jnp.stack([x0, 2 * x0, x0 + 1.0, x0 / 2])
    per_customer = cj.optimise_recipes(scores, starts)
    np.testing.assert_allclose(per_customer.score, batch.score, rtol=1e-10)


def test_bad_batches():
    x0 = jnp.asarray([1.0, 3.0, 2.0, 1.5])
    with pytest.raises(ValueError, match="leading axis, of one length"):
        cj.optimise_recipes(cj.Deliciousness(), x0)  # not a batch
    with pytest.raises(ValueError, match="x0 has 3 recipes for 4 customers"):
        cj.optimise_recipes(_scores(4), jnp.ones((3, 4)))
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ("shops",))
    with pytest.raises(ValueError, match="the mesh has no axis 'customers'"):
        cj.optimise_recipes(_scores(4), x0, mesh=mesh)
    with pytest.raises(
        RuntimeError, match="has 1 JAX process.*not 2: jax.distributed is not initialised"
    ):
        cj.customers_from_processes(_scores(4), mesh, processes=2)


_EIGHT_DEVICES = textwrap.dedent("""
    import equinox as eqx, jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec
    import cakejax as cj
    assert jax.device_count() == 8
    for dtype in (jnp.float32, jnp.float64):
        with jax.enable_x64(dtype == jnp.float64):
            ideals = jnp.linspace(8.0, 12.0, 16, dtype=dtype)
            fluffy = jnp.linspace(4.0, 6.0, 16, dtype=dtype)
            scores = eqx.filter_vmap(lambda s, f: cj.Deliciousness(
                ideal_sweetness=s, ideal_fluffiness=f))(ideals, fluffy)
            x0 = jnp.asarray([1.0, 3.0, 2.0, 1.5], dtype)
            mesh = Mesh(np.asarray(jax.devices()), ("customers",))
            one = cj.optimise_recipes(scores, x0)
            eight = cj.optimise_recipes(scores, x0, mesh=mesh)
            spec = NamedSharding(mesh, PartitionSpec("customers"))
            assert eight.recipe.sharding.is_equivalent_to(spec, 2), eight.recipe.sharding
            assert eight.score.sharding.is_equivalent_to(spec, 1), eight.score.sharding
            assert len(eight.recipe.addressable_shards) == 8
            a, b = np.asarray(one.recipe), np.asarray(eight.recipe)
            scale = np.max(np.abs(a))
            print(dtype.__name__, np.max(np.abs(a - b)) / scale,
                  np.max(np.abs(np.asarray(one.score) / np.asarray(eight.score) - 1)))
            try:
                cj.optimise_recipes(jax.tree.map(lambda v: v[:12], scores), x0, mesh=mesh)
            except ValueError as error:
                print(error)
    for call in (
        lambda: cj.customers_from_processes(jax.tree.map(lambda v: v[:12], scores), mesh),
        lambda: cj.optimise_recipes(jax.tree.map(lambda v: v[:0], scores), x0, mesh=mesh),
    ):
        try:
            call()
        except ValueError as error:
            print(error)
""")


@pytest.mark.slow  # a fresh process with 8 virtual devices
def test_eight_devices_give_one_devices_results_and_keep_the_batch_sharded():
    out = run_python(_EIGHT_DEVICES, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    lines = out.strip().splitlines()
    # Not bitwise: XLA compiles the sharded program with other fusions, so operations round
    # differently by an ulp, and an optimisation run to a tolerance can take another path.
    # The recipes agree to within the optimiser's tolerance (rtol 1e-4 in float32, 1e-8 in
    # float64, relative to the amounts' scale) and the scores to rounding.
    for line, rtol, score_rtol in ((lines[0], 1e-4, 1e-6), (lines[2], 1e-8, 1e-13)):
        _, recipe_error, score_error = line.split()
        assert float(recipe_error) <= rtol and float(score_error) <= score_rtol, line
    for line in (lines[1], lines[3]):
        assert line.startswith(
            "optimise_recipes: 12 customers do not split evenly over the mesh's 8 devices"
        ), line
    # Not JAX's IndivisibleError, nor NumPy's for an empty batch (issue 31).
    assert lines[4].startswith(
        "customers_from_processes: 12 customers do not split evenly over the mesh's 8 devices"
    ), lines[4]
    assert lines[5].startswith("optimise_recipes: there are no customers"), lines[5]


_WORKER = textwrap.dedent("""
    import json, sys
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    port, process = sys.argv[1], int(sys.argv[2])
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                               process_id=process, initialization_timeout=60)
    import equinox as eqx, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec
    import cakejax as cj
    assert jax.process_count() == 2 and jax.device_count() == 2
    mesh = Mesh(np.asarray(jax.devices()), ("customers",))
    sharding = NamedSharding(mesh, PartitionSpec("customers"))
    # This process owns half the customers: it builds only their scores, and JAX assembles
    # the global batch from each process's half.
    ideals = np.linspace(8.0, 12.0, 8, dtype=np.float32)[4 * process:4 * (process + 1)]
    mine = eqx.filter_vmap(lambda s: cj.Deliciousness(ideal_sweetness=s))(jnp.asarray(ideals))
    scores = cj.customers_from_processes(mine, mesh, processes=2)
    assert scores.ideal_sweetness.shape == (8,) and scores.ideal_sweetness.sharding == sharding
    solution = cj.optimise_recipes(scores, jnp.asarray([1.0, 3.0, 2.0, 1.5]), mesh=mesh)
    (shard,) = solution.recipe.addressable_shards
    print(json.dumps({"process": process, "rows": [shard.index[0].start, shard.index[0].stop],
                      "recipes": np.asarray(shard.data).tolist()}))
""")


@pytest.mark.slow  # two fresh processes through jax.distributed
def test_two_processes_each_owning_half_the_customers(tmp_path):
    import json
    import os
    import socket
    import subprocess
    import sys

    worker = tmp_path / "worker.py"
    worker.write_text(_WORKER)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    processes = [
        subprocess.Popen(
            [sys.executable, str(worker), str(port), str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )
        for i in range(2)
    ]
    try:
        outputs = [p.communicate(timeout=240) for p in processes]
    finally:
        for p in processes:
            p.kill()
    for p, (_, err) in zip(processes, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    halves = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    got = np.zeros((8, 4), np.float32)
    for half in halves:
        assert half["rows"] == [4 * half["process"], 4 * half["process"] + 4]
        got[slice(*half["rows"])] = half["recipes"]
    scores = eqx.filter_vmap(lambda s: cj.Deliciousness(ideal_sweetness=s))(
        jnp.linspace(8.0, 12.0, 8, dtype=jnp.float32)
    )
    single = np.asarray(cj.optimise_recipes(scores, jnp.asarray([1.0, 3.0, 2.0, 1.5])).recipe)
    # As on eight devices: equal to the optimiser's tolerance (float32, rtol 1e-4 of the
    # amounts' scale), not bitwise.
    assert np.max(np.abs(got - single)) <= 1e-4 * np.max(np.abs(single))
