"""FixedPoint at users' scales: forward + gradient through x* = tanh(W x* + U θ) for weak and
strong contractions against optimistix, solver step counts, and a deep-equilibrium classifier
on scikit-learn's digits trained with optax against the same model on optimistix."""

import io

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optax
import optimistix as optx

import cakejax as cj
from cakejax.examples import tanh_contraction, TanhCell

from ._common import BACKENDS, compile_fresh, compiled, GPU_SIZES, put, run, sized_for, Suite, warm


UNROLLED_STEPS = 48  # enough for ρ = 0.5 to reach float32 precision
RHOS = [0.5, 0.9, 0.99, 0.999]
PEER_MAX_STEPS = 100_000  # optimistix's Picard iteration needs thousands of steps at ρ → 1


def fixed_point_loss(method: str, n: int, rho: float):
    """The loss sum(x*²) of the fixed point of x ↦ tanh(W x + U θ) (W symmetric, spectral
    radius ρ), as a function of θ, by one of the methods compared."""
    W, U, theta = tanh_contraction(n, rho)
    x0 = jnp.zeros(n)

    def cell(t):
        return TanhCell(W, U, t)

    if method.startswith("cakejax"):
        solver = cj.Picard() if method == "cakejax Picard" else cj.Anderson()
        max_steps = PEER_MAX_STEPS if method == "cakejax Picard" else 256

        def solve(t):
            return cj.FixedPoint(cell(t), solver=solver, max_steps=max_steps)(x0)
    elif method == "unrolled":
        def solve(t):
            step = cell(t)
            return jax.lax.fori_loop(0, UNROLLED_STEPS, lambda _, x: step(x), x0)
    else:
        linear_solver = lx.GMRES(rtol=1e-6, atol=1e-6) if method == "optimistix+GMRES" else (
            lx.AutoLinearSolver(well_posed=None))

        def solve(t):
            step = cell(t)
            sol = optx.fixed_point(lambda x, _: step(x), optx.FixedPointIteration(1e-6, 1e-6),
                                   x0, adjoint=optx.ImplicitAdjoint(linear_solver),
                                   max_steps=PEER_MAX_STEPS)
            return sol.value

    return (lambda t: jnp.sum(solve(t) ** 2)), theta


FIXED_POINT_METHODS = ["cakejax", "cakejax Picard", "unrolled", "optimistix",
                       "optimistix+GMRES"]
#: Where each method is timed (the suite's ten-minute budget): cakejax everywhere, its peers at
#: ρ = 0.9 (optimistix + GMRES fails at 0.99 and 0.999 in float32: see the docs guide's FixedPoint
#: section), the unrolled loop only where 48 steps converge.
MEASURED_RHOS = {"cakejax": RHOS, "cakejax Picard": [0.9], "unrolled": [0.5],
                 "optimistix": [0.9], "optimistix+GMRES": [0.9]}


class _FixedPointProgram(Suite):
    """Forward solve + gradient of a loss through x* = tanh(W x* + U θ): cakejax's defaults
    (Anderson, implicit GMRES) and Picard, an unrolled loop (exact only at ρ = 0.5),
    optimistix's Picard iteration with its default ImplicitAdjoint (dense Jacobian, LU) and
    with lineax's GMRES."""

    param_names = ("method", "n", "rho", "backend")

    def setup(self, method, n, rho, backend):
        if rho not in MEASURED_RHOS[method]:
            raise NotImplementedError(f"{method} is measured at ρ in {MEASURED_RHOS[method]}")
        # Built once per process: the problem's eigendecomposition must not leak into samples.
        loss, theta = compiled(("fp-problem", method, n, rho),
                               lambda: fixed_point_loss(method, n, rho))
        self.fn = jax.value_and_grad(loss)
        self.args = (put(backend, theta),)


class FixedPointGradient(_FixedPointProgram):
    """Steady state of the compiled program. A failed solve raises in setup, shown by asv as
    a failure."""

    params = (FIXED_POINT_METHODS, [1000], RHOS, list(BACKENDS))
    repeat = (2, 5, 1.0)

    def setup(self, method, n, rho, backend):
        super().setup(method, n, rho, backend)
        self.jitted = compiled(("fp", method, n, rho, backend),
                               lambda: warm(self.fn, *self.args))

    def time_value_and_grad(self, method, n, rho, backend):
        run(self.jitted, *self.args)


class _FixedPointCompile(_FixedPointProgram):
    """Trace + compile of the same programs, cakejax's defaults against optimistix's, at
    ρ = 0.9 only (the program does not depend on ρ). Timed by `bench_headline.Ratios`, the
    two interleaved in one process; underscored, so that asv does not time them again."""

    params = (["cakejax", "optimistix"], [1000], [0.9], list(BACKENDS))

    def time_compile(self, method, n, rho, backend):
        self.last_compiled = compile_fresh(self.fn, *self.args)


class ForwardSteps(Suite):
    """Forward iterations to rtol = 1e-6 (deterministic): Anderson against Picard, all counted
    once in `setup_cache`."""

    params = (["Anderson", "Picard"], [1000], RHOS)
    param_names = ("solver", "n", "rho")

    def setup_cache(self):
        steps = {}
        for n in self.params[1]:
            for rho in self.params[2]:
                cell = TanhCell(*tanh_contraction(n, rho))
                for solver in self.params[0]:
                    fp = cj.FixedPoint(cell, max_steps=PEER_MAX_STEPS,
                                       solver=cj.Anderson() if solver == "Anderson" else cj.Picard())
                    steps[solver, n, rho] = float(fp.solve(jnp.zeros(n)).steps)
        return steps

    setup_cache.timeout = 300

    def track_steps(self, steps, solver, n, rho):
        return steps[solver, n, rho]

    track_steps.unit = "steps"


class Dough(Suite):
    """The course's scalar fixed point: cakejax's implicit gradient vs differentiating 64
    unrolled steps of the loop (the course's alternative)."""

    params = (["cakejax", "unrolled"], list(BACKENDS))
    param_names = ("method", "backend")

    def setup(self, method, backend):
        from . import course_baseline as course

        if method == "cakejax":
            def f(p):
                return cj.FixedPoint(cj.DoughMaturity(p[0], p[1]))(0.0)
        else:
            def f(p):
                return course.find_final_dough_maturity_unrolled((p[0], p[1]), 0.0, 64)
        self.args = (put(backend, jnp.asarray([0.75, 10.0])),)
        self.jitted = compiled(("dough", method, backend), lambda: warm(jax.grad(f), *self.args))

    def time_grad(self, method, backend):
        run(self.jitted, *self.args)


# --- a deep-equilibrium classifier on scikit-learn's bundled digits -------------------------

HIDDEN = 64
TRAIN_STEPS = 200
#: _DEQTrainStep's weights "trained": after this many adam steps, where contraction is weaker.
TRAINED_STEPS = 300
BATCH = 128


def hand_written_fixed_point(W, u, z0, rtol=1e-6, max_steps=256):
    """The implicit layer a user would write by hand, the DEQ's baseline: z* = tanh(W z* + u)
    by Picard iteration in a `while_loop` to `rtol` (relative step), its reverse mode by
    fixed-point iteration on the vector-Jacobian product to the same tolerance, in a
    `custom_vjp`; no certificate, no failure checks."""

    def close(new, old):
        return jnp.max(jnp.abs(new - old)) <= rtol * jnp.max(jnp.abs(new))

    def iterate(step, start):
        def cond(c):
            old, new, k = c
            return ~close(new, old) & (k < max_steps)

        def body(c):
            _, new, k = c
            return new, step(new), k + 1

        return jax.lax.while_loop(cond, body, (start, step(start), 0))[1]

    @jax.custom_vjp
    def solve(W, u):
        return iterate(lambda z: jnp.tanh(W @ z + u), z0)

    def forward(W, u):
        z = solve(W, u)
        return z, (W, u, z)

    def backward(residuals, g):
        W, u, z = residuals
        _, vjp_z = jax.vjp(lambda z: jnp.tanh(W @ z + u), z)
        v = iterate(lambda v: g + vjp_z(v)[0], g)
        _, vjp_params = jax.vjp(lambda W, u: jnp.tanh(W @ z + u), W, u)
        return vjp_params(v)

    solve.defvjp(forward, backward)
    return solve(W, u)


#: The DEQ's implementations: cakejax with no solver or adjoint argument, with each documented
#: setting a DEQ user might reach for, by hand, and optimistix.
DEQ_SETTINGS = {
    "cakejax": {},
    "cakejax dense": {"adjoint": cj.Implicit("dense")},
    "cakejax Picard+Neumann": {"solver": cj.Picard(), "adjoint": cj.Implicit("neumann")},
    "cakejax Picard": {"solver": cj.Picard()},
    "cakejax GMRES": {"adjoint": cj.Implicit("gmres")},
}


class DigitsDEQ(eqx.Module):
    """z* = tanh(Ŵ z* + U x + c), logits = V z* + d with Ŵ = 0.9 W / ‖W‖_F (spectral norm at
    most 0.9, so the map contracts whatever training does to W: unnormalised, adam makes it
    expansive within 100 steps and some examples have no attracting fixed point); the fixed
    point by cakejax (`DEQ_SETTINGS`: the defaults or a documented setting), by the
    hand-written layer, or by optimistix (Picard iteration, default ImplicitAdjoint)."""

    W: jax.Array
    U: jax.Array
    c: jax.Array
    V: jax.Array
    d: jax.Array
    impl: str = eqx.field(static=True)

    def __call__(self, x):
        u = self.U @ x + self.c
        W = 0.9 * self.W / jnp.linalg.norm(self.W)
        z0 = jnp.zeros(self.W.shape[0], x.dtype)
        if self.impl in DEQ_SETTINGS:
            cell = eqx.Partial(lambda z, W, u: jnp.tanh(W @ z + u), W=W, u=u)
            z = cj.FixedPoint(cell, **DEQ_SETTINGS[self.impl])(z0)
        elif self.impl == "hand-written":
            z = hand_written_fixed_point(W, u, z0)
        else:
            z = optx.fixed_point(lambda z, args: jnp.tanh(args[0] @ z + args[1]),
                                 optx.FixedPointIteration(1e-6, 1e-6), z0, args=(W, u),
                                 max_steps=PEER_MAX_STEPS).value
        return self.V @ z + self.d


def digits():
    """scikit-learn's bundled 8x8 digits (no download), scaled to [0, 1], split 80/20."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int32)
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order], y[order]
    cut = int(0.8 * len(y))
    return (jnp.asarray(x[:cut]), jnp.asarray(y[:cut])), (jnp.asarray(x[cut:]),
                                                          jnp.asarray(y[cut:]))


def init_deq(impl: str, hidden: int = HIDDEN) -> DigitsDEQ:
    kw, ku, kv = jax.random.split(jax.random.key(0), 3)
    W = jax.random.normal(kw, (hidden, hidden))
    return DigitsDEQ(0.5 * W / jnp.linalg.norm(W, 2), jax.random.normal(ku, (hidden, 64)) / 8,
                     jnp.zeros(hidden), jax.random.normal(kv, (10, hidden)) / 8,
                     jnp.zeros(10), impl)


def train_step_fn(tx):
    def loss(model, x, y):
        logits = jax.vmap(model)(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    def step(model, opt_state, x, y):
        value, grads = eqx.filter_value_and_grad(loss)(model, x, y)
        updates, opt_state = tx.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), opt_state, value

    return step


def train(impl: str, hidden: int = HIDDEN, steps: int = TRAIN_STEPS):
    """`steps` adam steps on minibatches; returns the model, the optimiser state and the
    test data."""
    (x, y), test = digits()
    model = init_deq(impl, hidden)
    tx = optax.adam(3e-3)
    opt_state = tx.init(eqx.filter(model, eqx.is_array))
    step = eqx.filter_jit(train_step_fn(tx))
    key = jax.random.key(1)
    for _ in range(steps):
        key, sub = jax.random.split(key)
        idx = jax.random.choice(sub, len(y), (BATCH,), replace=False)
        model, opt_state, _ = step(model, opt_state, x[idx], y[idx])
    return model, opt_state, test


def accuracy(model, test) -> float:
    x, y = test
    return float(jnp.mean(jnp.argmax(jax.vmap(model)(x), axis=1) == y))


class DEQDigits(Suite):
    """A deep-equilibrium classifier (64 hidden units) on digits: the test accuracy after 200
    adam steps, each implementation trained once, in `setup_cache` (asv runs it once and hands
    its result to every benchmark's process). Its train step is timed by `_DEQTrainStep`."""

    params = (["cakejax", "cakejax dense", "optimistix"],)
    param_names = ("impl",)
    timeout = 600

    def setup_cache(self):
        accuracies = {}
        for impl in self.params[0]:
            model, _, test = train(impl)
            accuracies[impl] = accuracy(model, test)
        return accuracies

    setup_cache.timeout = 900

    def track_test_accuracy(self, accuracies, impl):
        return accuracies[impl]

    track_test_accuracy.unit = "fraction"


class _DEQCompile(Suite):
    """Trace + compile of the DEQ's train step, the dense adjoint against optimistix (the
    program does not depend on the weights, so an untrained model is compiled). Timed by
    `bench_headline.Ratios`, interleaved in one process."""

    params = (["cakejax dense", "optimistix"],)
    param_names = ("impl",)

    def setup(self, impl):
        (x, y), _ = digits()
        self.model = init_deq(impl)
        self.opt_state = optax.adam(3e-3).init(eqx.filter(self.model, eqx.is_array))
        self.batch = (x[:BATCH], y[:BATCH])

    def time_compile_train_step(self, impl):
        jax.clear_caches()
        tx = optax.adam(3e-3)
        self.last_compiled = (
            eqx.filter_jit(train_step_fn(tx)).lower(self.model, self.opt_state, *self.batch)
            .compile()
        )

    def program(self, method):
        return (eqx.filter_jit(train_step_fn(optax.adam(3e-3))),
                (self.model, self.opt_state, *self.batch))



# --- issue 28: the dough at batch scale ------------------------------------------------------

DOUGH_METHODS = ["course", "defaults", "Picard", "Anderson(history=20)"]


def dough_batch(method: str, transform: str, n: int, backend: str):
    """(function, arguments): the course's dough maturity b / (1 - a) for `n` cakes under
    `jax.vmap` (retention a in [0.3, 0.8], boost 10, float32), its value or its gradient in
    (a, b), by the course's `while_loop` and `custom_vjp` or by `cj.FixedPoint` with the
    defaults, Picard, or Anderson with a fixed history of 20."""
    from . import course_baseline as course

    sized_for(backend, n)
    if method == "course":
        def one(p):
            return course.find_final_dough_maturity((p[0], p[1]), jnp.zeros((), p.dtype))
    else:
        options = {"defaults": {}, "Picard": {"solver": cj.Picard()},
                   "Anderson(history=20)": {"solver": cj.Anderson(history=20)}}[method]

        def one(p):
            return cj.FixedPoint(cj.DoughMaturity(p[0], p[1]), **options)(
                jnp.zeros((), p.dtype))

    key = jax.random.key(0)
    p = jnp.stack([jax.random.uniform(key, (n,), minval=0.3, maxval=0.8),
                   jnp.full((n,), 10.0)], axis=1)
    fn = jax.vmap(jax.grad(one) if transform == "grad" else one)
    return fn, (put(backend, p),)


class DoughBatch(Suite):
    """Issue 28's workload: 10³ and 10⁶ dough maturities under `vmap`, value and gradient,
    cakejax (defaults, Picard, Anderson with history 20 on a scalar) against the course's
    hand-written `while_loop` and `custom_vjp` (steady state, compile excluded)."""

    params = (DOUGH_METHODS, ["value", "grad"], [1000, 1000000, *GPU_SIZES], list(BACKENDS))
    param_names = ("method", "transform", "n", "backend")

    def setup(self, method, transform, n, backend):
        fn, self.args = dough_batch(method, transform, n, backend)
        self.jitted = compiled(("dough batch", method, transform, n, backend),
                               lambda: warm(fn, *self.args))

    def time_steady_state(self, method, transform, n, backend):
        run(self.jitted, *self.args)


class _DoughBatchCompile(Suite):
    """The first call's cost at N = 10³: trace + lower + compile, the defaults against the
    course's (issue 28's target: at most 2x). Timed by `bench_headline.Ratios`, interleaved
    in one process."""

    params = (["course", "defaults"], ["value", "grad"], [1000], list(BACKENDS))
    param_names = ("method", "transform", "n", "backend")

    def setup(self, method, transform, n, backend):
        self.fn, self.args = dough_batch(method, transform, n, backend)

    def time_compile(self, method, transform, n, backend):
        self.last_compiled = compile_fresh(self.fn, *self.args)



# --- issue 29: FixedPoint's defaults in deep-equilibrium training ---------------------------

DEQ_IMPLS = [*DEQ_SETTINGS, "hand-written", "optimistix"]


class _DEQTrainStep(Suite):
    """The DEQ's train step (steady state) at 64 and 128 hidden units, at initialisation and
    after 300 adam steps (trained once, by the defaults, so that every implementation is
    timed at the same weights, where contraction is weaker): cakejax's defaults against each
    documented setting, the hand-written implicit layer and optimistix. Timed by
    `bench_headline.Ratios` (the headline rows that name it, interleaved in one process)."""

    params = ([64, 128], ["init", "trained"], DEQ_IMPLS)
    param_names = ("hidden", "weights", "impl")
    timeout = 600

    def setup_cache(self):
        trained = {}
        for hidden in self.params[0]:
            model, _, _ = train("cakejax", hidden, steps=TRAINED_STEPS)
            buffer = io.BytesIO()
            eqx.tree_serialise_leaves(buffer, model)
            trained[hidden] = buffer.getvalue()
        return trained

    setup_cache.timeout = 900

    def setup(self, trained, hidden, weights, impl):
        (x, y), _ = digits()
        model = init_deq(impl, hidden)
        if weights == "trained":
            model = eqx.tree_deserialise_leaves(io.BytesIO(trained[hidden]), model)
        tx = optax.adam(3e-3)
        self.args = (model, tx.init(eqx.filter(model, eqx.is_array)), x[:BATCH], y[:BATCH])
        self.step = compiled(("deq step", hidden, impl),
                             lambda: eqx.filter_jit(train_step_fn(tx)))
        jax.block_until_ready(self.step(*self.args))

    def time_train_step(self, trained, hidden, weights, impl):
        jax.block_until_ready(self.step(*self.args))


class _DEQFirstCall(Suite):
    """Trace + compile of the DEQ's train step at 64 hidden units: the defaults against
    optimistix. Timed by `bench_headline.Ratios`, interleaved in one process."""

    params = (["cakejax", "optimistix"],)
    param_names = ("impl",)

    def setup(self, impl):
        (x, y), _ = digits()
        model = init_deq(impl)
        self.args = (model, optax.adam(3e-3).init(eqx.filter(model, eqx.is_array)), x[:BATCH],
                     y[:BATCH])

    def time_compile_train_step(self, impl):
        jax.clear_caches()
        self.last_compiled = (
            eqx.filter_jit(train_step_fn(optax.adam(3e-3))).lower(*self.args).compile()
        )

    def program(self, method):
        return eqx.filter_jit(train_step_fn(optax.adam(3e-3))), self.args



# --- issue 32: keeping a deep-equilibrium model contracting ---------------------------------

#: The Jacobian penalty's weight in the loss (the guide's worked example).
PENALTY = 0.1


class ContractingDEQ(eqx.Module):
    """z* = tanh(Ŵ z* + U x + c), logits = V z* + d, with Ŵ = W as it is (`keep="none"`) or
    `cj.spectral_normalise(W)`; the fixed point by cakejax's defaults or optimistix (Picard,
    default ImplicitAdjoint). Returns the logits and z*, for the Jacobian penalty."""

    W: jax.Array
    U: jax.Array
    c: jax.Array
    V: jax.Array
    d: jax.Array
    keep: str = eqx.field(static=True)
    impl: str = eqx.field(static=True)

    def cell(self, x):
        W = cj.spectral_normalise(self.W) if self.keep == "spectral_normalise" else self.W
        return eqx.Partial(lambda z, W, u: jnp.tanh(W @ z + u), W=W, u=self.U @ x + self.c)

    def __call__(self, x):
        cell = self.cell(x)
        z0 = jnp.zeros(self.W.shape[0], x.dtype)
        if self.impl == "cakejax":
            z = cj.FixedPoint(cell)(z0)
        else:
            z = optx.fixed_point(lambda z, _: cell(z), optx.FixedPointIteration(1e-6, 1e-6), z0,
                                 max_steps=PEER_MAX_STEPS).value
        return self.V @ z + self.d, z


def contracting_deq(keep: str, impl: str = "cakejax") -> ContractingDEQ:
    """The DEQ benchmark's initial weights (‖W‖₂ = 0.5), kept contracting by `keep`."""
    m = init_deq("cakejax")
    return ContractingDEQ(m.W, m.U, m.c, m.V, m.d, keep, impl)


def contracting_step_fn(tx, penalty: float):
    """An adam step on cross-entropy plus `penalty` times the mean Hutchinson estimate of
    ‖∂cell/∂z‖_F² at each example's fixed point (one probe an example)."""

    def loss(model, x, y, key):
        logits, z = jax.vmap(model)(x)
        value = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        if penalty:
            keys = jax.random.split(key, x.shape[0])
            jac = jax.vmap(lambda x, z, k: cj.jacobian_penalty(model.cell(x), z, key=k))(
                x, z, keys)
            value = value + penalty * jnp.mean(jac)
        return value

    def step(model, opt_state, x, y, key):
        value, grads = eqx.filter_value_and_grad(loss)(model, x, y, key)
        updates, opt_state = tx.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), opt_state, value

    return step


#: How each DEQContraction variant is built: what keeps W contracting, and the penalty.
CONTRACTION_SETTINGS = {
    "none": ("none", 0.0),
    "spectral_normalise": ("spectral_normalise", 0.0),
    "jacobian_penalty": ("none", PENALTY),
}


class _DEQContraction(Suite):
    """The cost of keeping the DEQ contracting: its train step (64 units, batch 128, cakejax
    defaults, steady state) with W as it is, through `cj.spectral_normalise`, or with
    `cj.jacobian_penalty` (one probe an example, weight 0.1) added to the loss. At the
    initial weights ‖W‖₂ = 0.5, so the normalisation leaves W as it is and every variant
    solves the same fixed points: the difference is the tools' own cost. Timed by
    `bench_headline.Ratios`, interleaved in one process."""

    params = (list(CONTRACTION_SETTINGS),)
    param_names = ("setting",)

    def setup(self, setting):
        (x, y), _ = digits()
        keep, penalty = CONTRACTION_SETTINGS[setting]
        model = contracting_deq(keep)
        tx = optax.adam(3e-3)
        self.args = (model, tx.init(eqx.filter(model, eqx.is_array)), x[:BATCH], y[:BATCH],
                     jax.random.key(0))
        self.step = compiled(("contraction", setting),
                             lambda: eqx.filter_jit(contracting_step_fn(tx, penalty)))
        jax.block_until_ready(self.step(*self.args))

    def time_train_step(self, setting):
        jax.block_until_ready(self.step(*self.args))


def train_contracting(keep: str, impl: str, penalty: float, steps: int = TRAINED_STEPS):
    """`steps` adam steps (lr 3e-3, batch 128) from `contracting_deq`; the test accuracy."""
    (x, y), test = digits()
    model = contracting_deq(keep, impl)
    tx = optax.adam(3e-3)
    opt_state = tx.init(eqx.filter(model, eqx.is_array))
    step = eqx.filter_jit(contracting_step_fn(tx, penalty))
    key = jax.random.key(1)
    for _ in range(steps):
        key, pick, probe = jax.random.split(key, 3)
        idx = jax.random.choice(pick, len(y), (BATCH,), replace=False)
        model, opt_state, _ = step(model, opt_state, x[idx], y[idx], probe)
    logits, _ = jax.vmap(model)(test[0])
    return float(jnp.mean(jnp.argmax(logits, axis=1) == test[1]))


class DEQContractionAccuracy(Suite):
    """Test accuracy after 300 adam steps of the DEQ kept contracting by
    `cj.spectral_normalise`, alone or with `cj.jacobian_penalty` (weight 0.1), by cakejax's
    defaults, against the same model and training on optimistix (trained once each, in
    `setup_cache`)."""

    params = (["cakejax", "cakejax + penalty", "optimistix"],)
    param_names = ("impl",)
    timeout = 600

    def setup_cache(self):
        return {
            "cakejax": train_contracting("spectral_normalise", "cakejax", 0.0),
            "cakejax + penalty": train_contracting("spectral_normalise", "cakejax", PENALTY),
            "optimistix": train_contracting("spectral_normalise", "optimistix", 0.0),
        }

    setup_cache.timeout = 900

    def track_test_accuracy(self, accuracies, impl):
        return accuracies[impl]

    track_test_accuracy.unit = "fraction"
