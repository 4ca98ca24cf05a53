"""A numerically stable, learnable softplus with a hand-written derivative rule."""

import equinox as eqx
import jax
import jax.core  # for jax.core.Tracer (named, so that type checkers see it)
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._checks import checked
from .._typing import as_float, as_float_array, PyInt, Scalar, TypedModule


@jax.custom_jvp
def _tower(beta, x):
    r"""$y$ and the three quantities its derivatives of every order are made of, from one
    exponential $e = e^{-\beta|x|} \in (0, 1]$ (never overflows), $l = \log(1 + e)$ and
    $r = 1/(1 + e) = \sigma(\beta|x|)$:

    $$\begin{aligned}
    y &= \max(x, 0) + l/\beta, \qquad s = \sigma(\beta x) =
      \begin{cases} r & x \ge 0 \\ e\,r & x < 0 \end{cases}, \\
    d &= \frac{\partial y}{\partial \beta} = -\frac{1}{\beta}\Big(\frac{l}{\beta}
      + |x|\,e\,r\Big), \qquad q = \sigma(\beta x)\,\sigma(-\beta x) = e\,r^2.
    \end{aligned}$$

    Each is written without cancellation ($s$ is never $1 - \sigma$, $q$ never
    $\sigma(1 - \sigma)$, which is 0 rather than $e^{-30}$ at $\beta x = 30$) and without a
    product that can become $\infty \cdot 0$. Their derivatives are again made of them (the
    rule below calls `_tower` itself), so every order is exact, including at $x = 0$, where
    $|x|$ has no derivative: with $u = \beta x$,
    $ds = q\,du$, $dq = q(1 - 2s)\,du$ and
    $dd = xq\,dx + (x^2 q - 2d)/\beta\,d\beta$.

    One exponential, one logarithm and one division per element serve the value and both
    first derivatives (a training step of `jax.nn.softplus` takes two exponentials); $1/\beta$
    is computed once per β.
    """
    x = jnp.asarray(x)
    magnitude = jnp.abs(x)
    inv_beta = 1 / beta
    e = jnp.exp(-beta * magnitude)
    log_term = jnp.log1p(e)
    r = 1 / (1 + e)
    s_neg = e * r
    y = jnp.maximum(x, 0) + log_term * inv_beta
    s = jnp.where(x >= 0, r, s_neg)
    d = -(log_term * inv_beta + magnitude * s_neg) * inv_beta
    q = s_neg * r
    return y, s, d, q


@_tower.defjvp
def _tower_jvp(primals, tangents):
    beta, x = primals
    beta_dot, x_dot = tangents
    x = jnp.asarray(x)
    y, s, d, q = out = _tower(beta, x)
    xq = x * q  # q vanishes where |x| is huge: no inf * 0
    du = beta * x_dot + x * beta_dot
    return out, (
        s * x_dot + d * beta_dot,
        q * du,
        xq * x_dot + (x * xq - 2 * d) / beta * beta_dot,
        q * (1 - 2 * s) * du,
    )


@jax.custom_jvp
def yeast_activity(beta: Scalar, x: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
    r"""$y = \operatorname{softplus}(\beta x)/\beta$, computed as
    $\max(x, 0) + \log(1 + e^{-\beta |x|})/\beta$: the exponential never exceeds 1, so no
    finite input overflows (the course's $\log(1 + e^{x})$ is `inf` at 500).

    The derivative rule (`jax.custom_jvp`):

    $$\frac{\partial y}{\partial x} = \sigma(\beta x), \qquad
    \frac{\partial y}{\partial \beta} = -\frac{1}{\beta}\Big(
    \frac{\log(1 + e^{-\beta|x|})}{\beta} + |x|\,\sigma(-\beta |x|)\Big)$$

    all from the shared quantities of `_tower`, whose own rule makes derivatives of every
    order exact and finite. (A first derivative needs only $y$, $s$ and $d$; XLA drops $q$.)
    """
    return _tower(beta, x)[0]


@yeast_activity.defjvp
def _yeast_activity_jvp(primals, tangents):
    beta, x = primals
    beta_dot, x_dot = tangents
    y, s, d, _ = _tower(beta, x)
    return y, s * x_dot + d * beta_dot


def _checked_beta(beta: Float[Array, "*neurons"]) -> Float[Array, "*neurons"]:
    """β, checked at call time: an optimiser step, `eqx.tree_at` or a loaded checkpoint can
    put it anywhere, and at β ≤ 0 the activity is ±inf or NaN, silently. The check is on β
    alone (a few scalars, whatever the batch): an error naming the field, or under
    `EQX_ON_ERROR=nan` NaN outputs and derivatives."""
    return checked(
        beta,
        ~((beta > 0) & (beta < jnp.inf)),
        "YeastActivity: field 'beta' must be positive and finite",
    )


class YeastActivity(TypedModule):
    r"""The course's yeast activity made stable and learnable:
    $\operatorname{softplus}(\beta x)/\beta$, a smooth ReLU whose sharpness $\beta$ is a
    parameter ($\beta \to \infty$ approaches $\max(x, 0)$).

    Finite value, first and second derivatives (in $x$ and $\beta$) for every finite
    float32/float64 input: 500 at 500 with derivative 1, and $\ge 0$ with derivative $\ge 0$
    at $-500$; derivatives of every order exact, including in the tails and at $x = 0$. (A
    third derivative in $\beta$ computed in reverse mode multiplies by $x$ twice before a
    vanishing factor, so it overflows to NaN where $x^2$ does: $|x| \gtrsim 10^{19}$ in
    float32.) Supports every transform: jit, vmap, grad, jvp, jacfwd, jacrev, hessian and
    higher derivatives, with respect to the input and to $\beta$.

    **Fields:**

    - `beta`: $\beta > 0$ (default 1), a learnable scalar array. Checked at construction
      and again at every call (`eqx.error_if`, so also under `jax.jit` and after an optimiser
      step, `eqx.tree_at` or a checkpoint put it out of range).
    """

    beta: Scalar = eqx.field(default=1.0, converter=as_float_array)

    def _check_values(self):
        if not isinstance(self.beta, jax.core.Tracer):
            beta = float(self.beta)
            if not (beta > 0 and beta < float("inf")):
                raise ValueError(
                    f"YeastActivity: field 'beta' must be positive and finite, got {beta}."
                )

    def __call__(self, x: Float[ArrayLike, "*shape"] | PyInt) -> Float[Array, "*shape"]:
        """**Arguments:** `x`, any shape. **Returns:** the activity, elementwise."""
        self.check_fields()
        return yeast_activity(_checked_beta(self.beta), as_float(x))
