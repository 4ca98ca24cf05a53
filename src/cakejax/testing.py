r"""Checks for custom-derivative layers: yours and cakejax's own.

`check_layer(layer, *example_args)` tries a layer (any callable, or an Equinox module whose
inexact array leaves are its parameters) at example inputs and returns a `LayerReport`:

- **transforms**: `jit`, `vmap`, `grad`, `jvp`, `jacfwd`, `jacrev`, `hessian`, each
  `works`, `refuses` (a clear error: JAX's refusal of forward mode for a `custom_vjp`, or an
  error the layer raises on purpose) or a failure: `crash` (any other exception, including
  JAX's complaints about a rule's output shapes) or `non-finite`;
- **jvp/vjp consistency**: $\langle v, J u\rangle = \langle J^\top v, u\rangle$ at random
  $u$, $v$ (a forward rule and a reverse rule that disagree are wrong);
- **finite differences, first order**: $J\delta$ against
  $\big(R(z + \delta) - R(z - \delta)\big)/2$, where $R$ is the layer, or a `reference` whose
  derivative the layer's is meant to be (a straight-through estimator's derivative is the
  identity's, not its own);
- **finite differences, second order**: the derivative of the layer's own gradient
  $g = \nabla_z \langle w, f(z)\rangle$ along $\delta$ (forward-over-reverse, or
  reverse-over-reverse where forward mode is refused) against $\big(g(z + \delta) -
  g(z - \delta)\big)/2$: a rule that is right at first order but not differentiable as
  written (a `stop_gradient` inside it, a derivative that is not the derivative of the
  first) fails here;
- **vmap** of the layer and of its gradient agree with a Python loop, **jit** with eager;
- optionally (`no_dense_jacobian=True`): no $k \times k$ array (two axes of length $k$) in
  the jaxpr of the gradient, for every argument of $k \ge 2$ elements (an implicit layer
  that should be matrix-free). Every such array counts, including the transpose of a
  $k \times k$ weight matrix of the layer's own: use it on layers without one.

Everything is done on one real vector $z$: the layer's parameters and the inexact arrays
among the arguments, with complex arrays split into real and imaginary parts (as
`cakejax.realify` does), so complex layers are checked as the real maps they are. Integer,
boolean and non-array arguments are held fixed.

The transforms are tried as a user calls them, eagerly; the checks after them run on the
layer compiled with `jax.jit` where `jit` works (one program per check), eagerly otherwise.

`transform(name, f)` applies one of the transforms by name (the table's columns, and
`"value"`).

Tolerances are relative, in the units of the layer's own values: a finite difference with
step $\delta_i = \varepsilon\,r_i\,|z_i|$ ($r$ random normal, $\varepsilon = 10^{-3}$ in
float64, $10^{-2}$ in float32; Richardson-extrapolated from $\delta$ and $2\delta$, so its
truncation error is $O(\varepsilon^5)$) is compared as
$\|D - 2J\delta\|_\infty \le \text{rtol}\,\|D\|_\infty + 32\,\epsilon\,\|f\|_\infty$,
the second term being the rounding error of the difference itself ($\epsilon$ the machine
epsilon). The default rtol is $10^{-6}$ in float64 and $10^{-3}$ in float32: a rule 1% off
fails in either. Run float64 (`jax.enable_x64`) for the sharpest checks.
"""

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import TypeCheckError

from ._arguments import tolerance
from ._typing import arrays_of, describe, describe_tree


#: The transforms of the table, in its column order.
TRANSFORMS = ("jit", "vmap", "grad", "jvp", "jacfwd", "jacrev", "hessian")

# JAX's messages when a custom rule's output does not match the primal's: the rule is wrong.
_RULE_ERRORS = (
    "Custom VJP bwd rule must produce",
    "Custom JVP rule must produce",
    # reverse mode of a custom_jvp whose tangent map is not linear
    "Transpose rule (for reverse-mode differentiation) for",
)
# Exceptions that are a clear refusal (JAX's refusal of forward mode for a custom_vjp, or an
# error a layer raises on purpose), unless their message is one of the above.
_REFUSALS = (TypeError, ValueError, NotImplementedError, TypeCheckError, eqx.EquinoxRuntimeError)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one transform, or one check, gave: `status` is `works`/`refuses` (both fine) or
    `crash`/`non-finite`/`wrong` (failures), or `n/a` (could not be run: the transforms it
    needs are refused); `detail` says why."""

    status: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("works", "refuses", "passes", "n/a")

    def cell(self) -> str:
        mark = {"works": "✓", "passes": "✓", "n/a": "–", "refuses": "✗"}.get(
            self.status, f"✗ {self.status}:"
        )
        return mark if not self.detail else f"{mark} {self.detail}"


@dataclasses.dataclass(frozen=True)
class LayerReport:
    """The result of `check_layer`. `ok` is whether every transform works or refuses
    clearly and every check passes; `str(report)` (or `table()`) is a readable table."""

    name: str
    transforms: dict[str, Outcome]
    checks: dict[str, Outcome]

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.transforms.values()) and all(
            o.ok for o in self.checks.values()
        )

    def transform_row(self) -> str:
        """The layer's row of a Markdown transform table (columns: `TRANSFORMS`)."""
        return _row(self.transforms)

    def table(self) -> str:
        lines = [
            f"{self.name}: {'ok' if self.ok else 'FAILED'}",
            "",
            "| " + " | ".join(TRANSFORMS) + " |",
            "|" + "---|" * len(TRANSFORMS),
            "| " + self.transform_row() + " |",
            "",
            "| check | result |",
            "|---|---|",
        ]
        lines += [f"| {name} | {outcome.cell()} |" for name, outcome in self.checks.items()]
        return "\n".join(lines)

    __str__ = table


def _classify(error: Exception) -> Outcome:
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if isinstance(error, _REFUSALS) and not any(text in message for text in _RULE_ERRORS):
        return Outcome("refuses", type(error).__name__)
    return Outcome("crash", f"{type(error).__name__}: {message[:240]}")


def _finite(tree) -> bool:
    return all(
        bool(np.all(np.isfinite(np.asarray(leaf)))) for leaf in jax.tree_util.tree_leaves(tree)
    )


class _Flat:
    """The layer as a map from one real vector `z` to one real vector: its inexact leaves
    (parameters and arguments) in, its output's leaves out, complex numbers as pairs."""

    def __init__(self, layer, args):
        args = tuple(
            jnp.asarray(a) if isinstance(a, float | complex | np.ndarray | np.generic) else a
            for a in args
        )
        dynamic, self.static = eqx.partition((layer, args), eqx.is_inexact_array)
        self.z0, self._unravel = ravel_pytree(jax.tree_util.tree_map(_to_real, dynamic))
        self._like = dynamic
        self.arg_sizes = [
            a.size for a in jax.tree_util.tree_leaves(eqx.filter(args, eqx.is_inexact_array))
        ]

    def inputs(self, z):
        real = self._unravel(z)
        dynamic = jax.tree_util.tree_map(_from_real, real, self._like)
        return eqx.combine(dynamic, self.static)

    def __call__(self, z):
        layer, args = self.inputs(z)
        out = layer(*args)
        return ravel_pytree(jax.tree_util.tree_map(_to_real, out))[0]


def _to_real(a):
    a = jnp.asarray(a)
    return jnp.stack([jnp.real(a), jnp.imag(a)], axis=-1) if jnp.iscomplexobj(a) else a


def _from_real(real, like):
    return jax.lax.complex(real[..., 0], real[..., 1]) if jnp.iscomplexobj(like) else real


def transform(name: str, f: Callable[[Any], Any], *, tangent: Any = None) -> Callable[[Any], Any]:
    r"""`f` under the JAX transform `name`, as a function of `f`'s input: one of `TRANSFORMS`
    or `"value"` (`f` itself).

    `jit`, `jacfwd`, `jacrev` as JAX's; `vmap` over a leading batch axis; `grad` and
    `hessian` of a scalar `f`; `jvp` gives the pair $(f(x), J_f(x)\,t)$ with the tangent $t$
    = `tangent` (default: ones like $x$). The transform table, the tests and the benchmarks
    all apply transforms by name through this."""
    if name == "jvp":
        return lambda x: jax.jvp(f, (x,), (jnp.ones_like(x) if tangent is None else tangent,))
    transforms: dict[str, Callable[[Callable], Callable]] = {
        "value": lambda g: g,
        "jit": jax.jit,
        "vmap": jax.vmap,
        "grad": jax.grad,
        "jacfwd": jax.jacfwd,
        "jacrev": jax.jacrev,
        "hessian": jax.hessian,
    }
    if name not in transforms:
        raise ValueError(f"transform: name must be one of {('value', *TRANSFORMS)}, got {name!r}.")
    return transforms[name](f)


def _transform(name: str, f: Callable, z, u, w, batch):
    """A transform of the layer's flattened map `f` at `z`: `grad` and `hessian` of its
    output's projection on `w`, `jvp` along `u`, `vmap` over `batch`."""
    scalar = lambda z_: jnp.vdot(w, f(z_))  # noqa: E731
    g = scalar if name in ("grad", "hessian") else f
    return transform(name, g, tangent=u)(batch if name == "vmap" else z)


def _try(thunk) -> tuple[Any, Outcome]:
    try:
        out = jax.block_until_ready(thunk())
    except Exception as error:  # noqa: BLE001 - a report of whatever the layer raises
        return None, _classify(error)
    if not _finite(out):
        return out, Outcome("non-finite", "non-finite values")
    return out, Outcome("works")


def _compare(name, got, want, rtol, floor) -> Outcome:
    """`got` against `want`: ‖got − want‖∞ ≤ rtol‖want‖∞ + floor."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    error = float(np.max(np.abs(got - want), initial=0.0))
    scale = float(np.max(np.abs(want), initial=0.0))
    bound = rtol * scale + floor
    if error <= bound:
        return Outcome("passes")
    relative = f"{error / scale:.3g}" if scale else "inf"
    return Outcome(
        "wrong",
        f"{name}: off by {error:.3g} (largest absolute error; {relative} relative to the "
        f"largest |value| {scale:.3g}), allowed {bound:.3g} (= rtol {rtol:g} x {scale:.3g} "
        f"+ rounding {floor:.3g})",
    )


def _difference(fn, z, delta):
    r"""$2 J\delta$ from values alone, by Richardson's extrapolation of two central differences,
    $\big(8 D(\delta) - D(2\delta)\big)/6$ with $D(\delta) = f(z + \delta) - f(z - \delta)$
    (its error is $O(\delta^5)$), and the largest value it used (the scale of its rounding
    error)."""
    values = [fn(z + k * delta) for k in (1, -1, 2, -2)]
    difference = (8 * (values[0] - values[1]) - (values[2] - values[3])) / 6
    return difference, max(float(jnp.max(jnp.abs(value), initial=0.0)) for value in values)


def _walk_shapes(jaxpr):
    """Every variable's shape in a jaxpr and the jaxprs nested in its equations."""
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            yield getattr(var.aval, "shape", ())
        for param in eqn.params.values():
            for sub in param if isinstance(param, list | tuple) else (param,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _walk_shapes(inner)


def _check_layer_output(layer, args) -> None:
    """A clear error for what `check_layer` cannot check: a layer that is not callable, one
    that does not return inexact arrays, and half precision."""
    if not callable(layer):
        raise TypeError(
            f"check_layer: layer must be callable (a function or an Equinox module), got "
            f"{describe(layer)}."
        )
    try:  # traced, not run (an iterative layer would be solved once more)
        out = eqx.filter_eval_shape(layer, *args)
    except Exception:  # a layer that cannot be traced: the checks will say which
        out = layer(*args)
    if not arrays_of(out, jnp.inexact):
        raise TypeError(
            "check_layer: the layer must return an inexact (float or complex) array or a "
            f"PyTree of them, whose derivatives can be checked; it returned "
            f"{describe_tree(out)}."
        )
    inputs = eqx.filter((layer, args, out), eqx.is_inexact_array)
    low = {str(a.dtype) for a in jax.tree_util.tree_leaves(inputs) if jnp.finfo(a.dtype).bits < 32}
    if low:
        raise TypeError(
            f"check_layer: the layer computes in {', '.join(sorted(low))}, where a finite "
            "difference has no accurate digits to compare a derivative with (a rule 1% off "
            "would pass). Check it in float32 or float64: cast the layer's parameters and "
            "the example arguments, e.g. jax.tree.map(lambda a: a.astype(jnp.float32), "
            "layer)."
        )


class _Setup:
    """The layer flattened, and the random directions and batch every check uses."""

    def __init__(self, layer, args, key):
        _check_layer_output(layer, args)
        self.flat = flat = _Flat(layer, args)
        self.z = z = flat.z0
        if z.size == 0:
            raise ValueError(
                "check_layer: the layer has no inexact array parameters and no "
                "inexact array arguments, so there is nothing to differentiate."
            )
        dtype = z.dtype
        key = jax.random.key(0) if key is None else key
        k_dir, k_out, k_weight, k_batch = jax.random.split(key, 4)
        self.y0 = flat(z)
        typical = float(jnp.max(jnp.abs(z))) or 1.0
        scale = jnp.where(z != 0, jnp.abs(z), typical)
        # A direction of each component's own size, and a batch of relative perturbations
        # (signs kept, so that a layer with a domain, x >= 0 say, stays inside it).
        self.u = jax.random.normal(k_dir, z.shape, dtype) * scale
        self.v = jax.random.normal(k_out, self.y0.shape, dtype)
        self.w = jax.random.normal(k_weight, self.y0.shape, dtype)
        self.batch = z[None] * (1 + 0.01 * jax.random.normal(k_batch, (3, *z.shape), dtype))
        # The layer compiled, for the checks of `check_layer` (one program per check, where
        # run op by op each call of an iterative layer compiles its loops anew).
        self.compiled = jax.jit(flat)

    def transforms(self) -> dict[str, Outcome]:
        return {
            t: _try(lambda t=t: _transform(t, self.flat, self.z, self.u, self.w, self.batch))[1]
            for t in TRANSFORMS
        }


def check_transforms(
    layer: Callable[..., Any], *example_args: Any, key: jax.Array | None = None
) -> dict[str, Outcome]:
    """The transform part of `check_layer` alone: each of `TRANSFORMS` applied to the layer
    (as a map of its flattened parameters and inexact arguments), `works`, `refuses`,
    `crash` or `non-finite`. `python -m cakejax transforms` prints cakejax's own."""
    return _Setup(layer, example_args, key).transforms()


def check_layer(
    layer: Callable[..., Any],
    *example_args: Any,
    reference: Callable[..., Any] | None = None,
    rtol: float | int | None = None,
    no_dense_jacobian: bool = False,
    key: jax.Array | None = None,
    name: str | None = None,
) -> LayerReport:
    r"""Checks a custom-derivative layer at example inputs (see the module's docstring for
    every check and its tolerance).

    **Arguments:**

    - `layer`: a callable or an Equinox module; its output any PyTree of inexact arrays.
    - `example_args`: the inputs to call it with (at least one inexact array among them and
      the layer's parameters). Choose a point where the layer is smooth.
    - `reference`: a function with the layer's signature whose finite differences the
      layer's first derivative must match (default: the layer itself). For a layer whose
      derivative is deliberately not its own (`StraightThrough(jnp.round)`: the identity's;
      `GradientScale(s)`: `lambda x: s * x`'s).
    - `rtol`: the relative tolerance of the finite-difference checks (default $10^{-3}$ in
      float32, $10^{-6}$ in float64).
    - `no_dense_jacobian`: also fail if the gradient's jaxpr holds an array with two axes
      of length $k$, for an argument of $k \ge 2$ elements.
    - `key`: the PRNG key of the random directions (default `jax.random.key(0)`).
    - `name`: the layer's name in the report (default its type's name).

    **Returns:** a `LayerReport`.
    """
    if rtol is not None:
        tolerance("check_layer", "rtol", rtol, positive=True, below=1)
    setup = _Setup(layer, example_args, key)
    z, y0, u, v, w = setup.z, setup.y0, setup.u, setup.v, setup.w
    transforms = setup.transforms()
    # The checks below run the layer compiled where it compiles (one program per check, not
    # one per operation and call), eagerly otherwise; `jit = eager` compares the two.
    flat = setup.compiled if transforms["jit"].status == "works" else setup.flat
    arg_sizes = setup.flat.arg_sizes
    dtype = z.dtype
    eps = float(jnp.finfo(dtype).eps)
    double = dtype == jnp.float64
    rtol = (1e-6 if double else 1e-3) if rtol is None else float(rtol)
    step = 1e-3 if double else 1e-2
    delta = step * u
    scalar = lambda z_: jnp.vdot(w, flat(z_))  # noqa: E731
    f_scale = float(jnp.max(jnp.abs(y0), initial=0.0))

    checks: dict[str, Outcome] = {}
    # jvp/vjp consistency.
    jvp_out, jvp_ok = _try(lambda: jax.jvp(flat, (z,), (u,))[1])
    vjp_out, vjp_ok = _try(lambda: jax.vjp(flat, z)[1](v)[0])
    if jvp_ok.status == vjp_ok.status == "works":
        forward, backward = float(jnp.vdot(v, jvp_out)), float(jnp.vdot(vjp_out, u))
        size = float(jnp.sum(jnp.abs(v * jvp_out)) + jnp.sum(jnp.abs(vjp_out * u)))
        tol = 100 * eps * math.sqrt(z.size + y0.size) * size
        checks["jvp/vjp consistency"] = (
            Outcome("passes")
            if abs(forward - backward) <= tol
            else Outcome("wrong", f"<v, J u> = {forward:.6g} but <J^T v, u> = {backward:.6g}")
        )
    else:
        checks["jvp/vjp consistency"] = Outcome("n/a", "needs jvp and vjp")

    # First order, against finite differences of the layer, or of the reference along the
    # arguments alone (the reference need not have the layer's parameters).
    if reference is None:
        ref_fn, ref_z, ref_delta, delta1 = flat, z, delta, delta
    else:
        ref = _Flat(reference, example_args)
        n_params, n_ref_params = z.size - sum(arg_sizes), ref.z0.size - sum(arg_sizes)
        delta1 = delta.at[:n_params].set(0)
        ref_fn, ref_z = ref, ref.z0
        ref_delta = jnp.concatenate([jnp.zeros(n_ref_params, dtype), delta[n_params:]])
    d1_out, d1_ok = _try(lambda: jax.jvp(flat, (z,), (delta1,))[1])
    difference, size = _difference(ref_fn, ref_z, ref_delta)
    floor = 32 * eps * size
    if d1_ok.status == "works":
        checks["finite differences, 1st order"] = _compare(
            "J delta (jvp)", 2 * d1_out, difference, rtol, floor
        )
    elif vjp_ok.status == "works":
        checks["finite differences, 1st order"] = _compare(
            "<J^T v, delta> (vjp)",
            2 * jnp.vdot(vjp_out, delta1),
            jnp.vdot(v, difference),
            rtol,
            floor * float(jnp.sum(jnp.abs(v))),
        )
    else:
        checks["finite differences, 1st order"] = Outcome("n/a", "no derivative works")

    # Second order: the gradient's own derivative against its finite differences.
    grad = jax.grad(scalar)
    grad_fd, grad_ok = _try(lambda: _difference(grad, z, delta))
    second, second_ok = _try(lambda: jax.jvp(grad, (z,), (delta,))[1])
    if second_ok.status != "works":
        second, second_ok = _try(lambda: jax.grad(lambda z_: jnp.vdot(grad(z_), delta))(z))
    if grad_ok.status == second_ok.status == "works":
        difference, size = grad_fd
        checks["finite differences, 2nd order"] = _compare(
            "H delta", 2 * second, difference, rtol, 32 * eps * size
        )
    else:
        checks["finite differences, 2nd order"] = Outcome("n/a", "no second derivative works")

    # vmap against a loop, jit against eager.
    batch = setup.batch
    floor = 16 * eps * f_scale
    for label, fn, status in (
        ("vmap = loop", flat, "works"),
        ("vmap of grad = loop", grad, transforms["grad"].status),
    ):
        if status != "works" or transforms["vmap"].status != "works":
            checks[label] = Outcome(
                "n/a", "needs vmap and " + ("grad" if fn is grad else "the layer")
            )
            continue
        looped = jnp.stack([fn(b) for b in batch])
        batched, outcome = _try(lambda fn=fn: jax.vmap(fn)(batch))
        checks[label] = (
            outcome
            if outcome.status != "works"
            else _compare(
                label, batched, looped, 64 * eps, 64 * eps * float(jnp.max(jnp.abs(looped)))
            )
        )
    if transforms["jit"].status == "works":
        checks["jit = eager"] = _compare("jit", setup.compiled(z), y0, 64 * eps, floor)
    else:
        checks["jit = eager"] = Outcome("n/a", "jit does not work")

    if no_dense_jacobian:
        shapes = set(_walk_shapes(jax.make_jaxpr(grad)(z).jaxpr))
        dense = [(k, shape) for k in arg_sizes if k >= 2 for shape in shapes if shape.count(k) >= 2]
        checks["no dense Jacobian"] = (
            Outcome(
                "wrong", f"an array of shape {dense[0][1]} for an input of {dense[0][0]} elements"
            )
            if dense
            else Outcome("passes")
        )

    report_name = name or getattr(layer, "__name__", None) or type(layer).__name__
    return LayerReport(report_name, transforms, checks)


def assert_layer(layer: Callable[..., Any], *example_args: Any, **options: Any) -> LayerReport:
    """`check_layer`, raising `AssertionError` with the report's table when anything fails;
    returns the report otherwise. Takes the same options."""
    report = check_layer(layer, *example_args, **options)
    if not report.ok:
        raise AssertionError("\n" + report.table())
    return report


def transform_table(rows: dict[str, dict[str, Outcome]]) -> str:
    """The Markdown transform table of several layers' `check_transforms` (or
    `LayerReport.transforms`), keyed by the layers' names: one row per layer."""
    lines = ["| layer | " + " | ".join(TRANSFORMS) + " |", "|---|" + "---|" * len(TRANSFORMS)]
    lines += [f"| `{name}` | {_row(outcomes)} |" for name, outcomes in rows.items()]
    return "\n".join(lines)


def _row(outcomes: dict[str, Outcome]) -> str:
    return " | ".join(outcomes[t].cell() for t in TRANSFORMS)
