"""`python -m cakejax bake`: the course's cake optimised, its recipe before and after; with
`--customers N`, one recipe per customer with a progress bar; with `--plot`, a PNG of the
score along the way (the optional `plot` extra: matplotlib)."""

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


def _pyplot():
    """matplotlib's pyplot (non-interactive), or a clear exit before any work is done."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError as error:
        raise SystemExit("--plot needs matplotlib: pip install 'cakejax[plot]'") from error
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


def run(customers: int = 0, plot: str | None = None, chunk: int = 4096, output=print) -> int:
    """Prints the course's cake before and after optimisation (and, with `customers`,
    optimises that many customers' recipes in chunks behind a progress bar). Returns 0 when
    everything converged."""
    pyplot = _pyplot() if plot else None
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
    if plot:
        _plot(pyplot, plot, path, output)
    if customers:
        key_s, key_f = jax.random.split(jax.random.key(0))
        ideals = 10.0 + jax.random.normal(key_s, (customers,))
        fluffy = 5.0 + 0.5 * jax.random.normal(key_f, (customers,))
        start = time.perf_counter()
        converged = 0
        for first in tqdm(range(0, customers, chunk), unit="chunk", desc="customers"):
            batch = eqx.filter_vmap(
                lambda s, f: cj.Deliciousness(ideal_sweetness=s, ideal_fluffiness=f)
            )(ideals[first : first + chunk], fluffy[first : first + chunk])
            result = cj.optimise_recipes(batch, x0, throw=False)
            converged += int(jnp.sum(result.result == cj.RecipeResult.successful))
        seconds = time.perf_counter() - start
        output(
            f"{customers} customers' recipes: {converged} converged, in {seconds:.1f} s "
            f"({customers / seconds:.0f} customers/s)"
        )
        return 0 if converged == customers else 1
    return 0
