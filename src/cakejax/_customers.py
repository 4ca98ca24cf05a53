r"""One best recipe per customer, for millions of customers, on one device or sharded over
many with `jax.sharding`."""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import ArrayLike, Float

from ._arguments import count
from ._bake import optimise_recipe, RecipeSolution
from ._programs import bounded_jit


#: The keyword arguments of `optimise_recipe` that `optimise_recipes` passes on.
_OPTIONS = frozenset({"lower", "upper", "rtol", "max_steps", "throw", "callback"})


def _batch_size(function: str, scores) -> int:
    """The number of customers: the one leading length of `scores`' arrays, at least 1."""
    sizes = {
        leaf.shape[0] if leaf.ndim else None
        for leaf in jax.tree_util.tree_leaves(eqx.filter(scores, eqx.is_array))
    }
    size = next(iter(sizes)) if len(sizes) == 1 else None
    if size is None:
        raise ValueError(
            f"{function}: every array of `scores` must have the customers as its leading "
            f"axis, of one length; got leading lengths {sorted(map(str, sizes))}. Build "
            "them with eqx.filter_vmap, e.g. eqx.filter_vmap(lambda s: "
            "cj.Deliciousness(ideal_sweetness=s))(ideals)."
        )
    if size == 0:
        raise ValueError(
            f"{function}: there are no customers (the scores' leading axis has length 0); "
            "pass at least one."
        )
    return size


def _check_split(function: str, customers: int, mesh: Mesh, axis: str) -> None:
    devices = mesh.shape[axis]
    if customers % devices:
        raise ValueError(
            f"{function}: {customers} customers do not split evenly over the mesh's "
            f"{devices} devices along {axis!r}; pad the batch to a multiple of {devices} "
            "(nothing is dropped or padded silently)."
        )


def _check_axis(function: str, mesh: Mesh, axis: str) -> None:
    if axis not in mesh.axis_names:
        raise ValueError(
            f"{function}: the mesh has no axis {axis!r} (its axes: {mesh.axis_names})."
        )


def optimise_recipes(
    scores: Any,
    x0: Float[ArrayLike, "..."],
    *,
    mesh: Mesh | None = None,
    axis: str = "customers",
    **options: Any,
) -> RecipeSolution:
    r"""`optimise_recipe` for every customer at once: `jax.vmap` over a batch of scores
    (one per customer, each with its own parameters: ideal sweetness and fluffiness, say),
    compiled once with `eqx.filter_jit`.

    With a `mesh` the customers are split over its devices (`NamedSharding` over the batch
    axis, `PartitionSpec(axis)`): each device optimises its own customers, with no
    communication, and the solution stays sharded the same way (no gather of the batch).
    Each customer's optimisation is independent, but the results are not bitwise those of
    one device: XLA fuses the sharded program differently, some operations round differently
    by an ulp, and a run to a tolerance can take another path. They agree to the optimiser's
    tolerance (tested on 8 devices).

    **Arguments:**

    - `scores`: a batch of scores, every array with the customers as its leading axis
      (`eqx.filter_vmap(lambda s: cj.Deliciousness(ideal_sweetness=s))(ideals)`).
    - `x0`: the starting recipe, shared `(n,)` or one per customer `(customers, n)`.
    - `mesh`: a `jax.sharding.Mesh` with an axis named `axis`, whose size divides the
      number of customers; `None` runs where the inputs are.
    - `options`: passed to `optimise_recipe` (`lower`, `upper`, `rtol`, `max_steps`,
      `throw`).

    **Returns:** a `RecipeSolution` whose arrays have the customers as their leading axis.
    """
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise TypeError(
            f"optimise_recipes: unknown option(s) {unknown}; the options are those of "
            f"optimise_recipe: {sorted(_OPTIONS)}."
        )
    customers = _batch_size("optimise_recipes", scores)
    x0 = jnp.asarray(x0)
    per_customer = x0.ndim == 2
    if per_customer and x0.shape[0] != customers:
        raise ValueError(
            f"optimise_recipes: x0 has {x0.shape[0]} recipes for {customers} customers."
        )
    if mesh is not None:
        _check_axis("optimise_recipes", mesh, axis)
        _check_split("optimise_recipes", customers, mesh, axis)
        sharded = NamedSharding(mesh, PartitionSpec(axis))
        scores = eqx.filter_shard(scores, sharded)
        x0 = jax.device_put(x0, sharded if per_customer else NamedSharding(mesh, PartitionSpec()))
    return _batched(scores, x0, per_customer, tuple(sorted(options.items())))


@bounded_jit
def _batched(scores, x0, per_customer, options) -> RecipeSolution:
    def one(score, start):
        return optimise_recipe(score, start, **dict(options))

    return eqx.filter_vmap(one, in_axes=(eqx.if_array(0), 0 if per_customer else None))(scores, x0)


def customers_from_processes(
    local_scores: Any, mesh: Mesh, *, axis: str = "customers", processes: int | None = None
) -> Any:
    """The global batch of scores from each process's own customers (multi-process runs,
    after `jax.distributed.initialize`): every process passes the scores of the customers it
    owns, all with the same number of customers, and gets back arrays sharded over `mesh`
    (`jax.make_array_from_process_local_data`), ready for `optimise_recipes(..., mesh=mesh)`.

    **Arguments:**

    - `local_scores`: this process's customers' scores (leading axis: its customers).
    - `mesh`: a mesh over every process's devices (`jax.devices()`), with an axis `axis`.
    - `processes`: how many processes the run is meant to have. When given, a different
      `jax.process_count()` is an error: forgetting `jax.distributed.initialize` would
      otherwise leave each process optimising its own customers as if they were all of
      them, silently.
    """
    if processes is not None:
        processes = count("customers_from_processes", "processes", processes)
    if processes is not None and jax.process_count() != processes:
        raise RuntimeError(
            f"customers_from_processes: this run has {jax.process_count()} JAX process(es), "
            f"not {processes}: jax.distributed is not initialised (call "
            "jax.distributed.initialize(coordinator_address=..., num_processes=..., "
            "process_id=...) in every process before anything else in JAX)."
        )
    local = _batch_size("customers_from_processes", local_scores)
    _check_axis("customers_from_processes", mesh, axis)
    _check_split("customers_from_processes", local * jax.process_count(), mesh, axis)
    sharding = NamedSharding(mesh, PartitionSpec(axis))
    return jax.tree_util.tree_map(
        lambda a: (
            jax.make_array_from_process_local_data(sharding, np.asarray(a))
            if eqx.is_array(a)
            else a
        ),
        local_scores,
    )
