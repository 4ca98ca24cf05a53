"""`python -m cakejax bake`: the course's cake optimised, its recipe before and after; with
`--customers N`, one recipe per customer in chunks behind a progress bar, compile time and
throughput reported apart; with `--plot`, an image of the score along the way (the optional
`plot` extra: matplotlib). Every argument is checked before any work is done."""

import os
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

import cakejax as cj
from cakejax.examples import cake


def _table(before, after) -> str:
    lines = [f"  {'ingredient':<12}{'course':>10}{'best':>12}"]
    lines += [
        f"  {name:<12}{b:>10.4f}{a:>12.6g}"
        for name, b, a in zip(cj.INGREDIENTS, np.asarray(before), np.asarray(after), strict=True)
    ]
    return "\n".join(lines)


def _pyplot(path: str):
    """matplotlib's pyplot (non-interactive), once `path` is known to be writable in a format
    matplotlib writes; otherwise a clear exit before any work is done."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError as error:
        raise SystemExit("--plot needs matplotlib: pip install 'cakejax[plot]'") from error
    if not path:
        raise SystemExit("--plot: the path is empty; give a file name such as path.png")
    formats = pyplot.figure().canvas.get_supported_filetypes()
    pyplot.close("all")
    extension = os.path.splitext(path)[1].lstrip(".").lower()
    if extension not in formats:
        raise SystemExit(
            f"--plot: cannot write {path!r}: its extension must name an image format "
            f"matplotlib writes ({', '.join(sorted(formats))}), e.g. path.png"
        )
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise SystemExit(f"--plot: cannot write {path!r}: the folder {folder} does not exist")
    existed = os.path.exists(path)
    try:  # the one sure test of writability (permissions, read-only mounts, root)
        with open(path, "ab"):
            pass
    except OSError as error:
        raise SystemExit(f"--plot: cannot write {path!r}: {error.strerror}") from None
    if not existed:
        os.remove(path)
    return pyplot


def _plot(pyplot, path, scores, output) -> None:
    figure, axes = pyplot.subplots(figsize=(6, 3.5))
    axes.plot(range(len(scores)), scores, marker="o", markersize=3)
    axes.set_xlabel("trust-region step")
    axes.set_ylabel("deliciousness")
    axes.set_title("The course's cake, optimised")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    output(f"wrote {path}")


@jax.jit
def _converged(ideals, fluffy, real, x0):
    """How many of the real customers (`real`) in one chunk converged: a chunk is padded to
    the chunk size (with copies of the first customer, not counted) so that every chunk runs
    one compiled program."""
    scores = eqx.filter_vmap(lambda s, f: cj.Deliciousness(ideal_sweetness=s, ideal_fluffiness=f))(
        ideals, fluffy
    )
    result = cj.optimise_recipes(scores, x0, throw=False).result
    return jnp.sum((result == cj.RecipeResult.successful) & real)


def _customers(customers: int, chunk: int, x0, output) -> int:
    """Optimises `customers` customers' recipes in chunks of at most `chunk`; returns how many
    converged. Compile time and run time are reported apart: the throughput is the library's,
    not the compiler's. (The default chunk, 16384, is where a vmapped batch is fastest per
    customer on a 2-core CPU: 4096 runs at 0.7x the rate of 16384, 32768 at 1.05x, one call
    of 10^5 at 0.9x.)"""
    key_s, key_f = jax.random.split(jax.random.key(0))
    ideals = 10.0 + jax.random.normal(key_s, (customers,))
    fluffy = 5.0 + 0.5 * jax.random.normal(key_f, (customers,))
    # As many chunks as `chunk` allows, of equal size: at most one customer a chunk padded.
    chunk = -(-customers // -(-customers // chunk))
    padded = -(-customers // chunk) * chunk
    real = jnp.arange(padded) < customers
    ideals, fluffy = (
        jnp.concatenate([a, jnp.full(padded - customers, a[0])]) for a in (ideals, fluffy)
    )
    start = time.perf_counter()
    program = _converged.lower(ideals[:chunk], fluffy[:chunk], real[:chunk], x0).compile()
    output(
        f"compiled the program for {chunk} customers a chunk in {time.perf_counter() - start:.1f} s"
    )
    start = time.perf_counter()
    converged = 0
    for first in tqdm(range(0, padded, chunk), unit="chunk", desc="customers"):
        part = slice(first, first + chunk)
        converged += int(program(ideals[part], fluffy[part], real[part], x0))
    seconds = time.perf_counter() - start
    output(
        f"{customers} customers' recipes: {converged} converged, in {seconds:.2f} s "
        f"({customers / seconds:.0f} customers/s, compile time excluded)"
    )
    return converged


def run(customers: int = 0, plot: str | None = None, chunk: int = 16384, output=print) -> int:
    """Prints the course's cake before and after optimisation (and, with `customers`,
    optimises that many customers' recipes in chunks behind a progress bar). Returns 0 when
    everything converged."""
    pyplot = _pyplot(plot) if plot is not None else None
    score = cj.Deliciousness()
    x0 = cake()
    path = [float(score(x0))]
    solution = cj.optimise_recipe(
        score, x0, callback=lambda step, recipe, value: path.append(float(value))
    )
    output(
        f"The course's cake: deliciousness {float(score(x0)):.4f} -> "
        f"{float(solution.score):.4f} in {int(solution.steps)} steps "
        f"({int(solution.hvps)} Hessian-vector products)"
    )
    output(_table(x0, solution.recipe))
    if pyplot is not None:
        _plot(pyplot, plot, path, output)
    if customers:
        return 0 if _customers(customers, chunk, x0, output) == customers else 1
    return 0
