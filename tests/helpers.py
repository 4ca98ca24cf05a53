import os
import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

from cakejax import _course as course


def assert_course(ours, expected):
    """`ours` equals a number the course printed, to the float32 rounding the course shows."""
    np.testing.assert_allclose(
        np.asarray(ours), np.asarray(expected), rtol=course.RTOL, atol=course.ATOL
    )


#: Ingredient amounts where every model is smooth: strictly positive, moderate.
amounts = st.floats(min_value=0.2, max_value=4.0, allow_nan=False, allow_infinity=False)
cakes = st.tuples(amounts, amounts, amounts, amounts).map(lambda t: jnp.asarray(t, dtype=float))
directions = st.tuples(*[st.floats(-1.0, 1.0)] * 4).map(lambda t: jnp.asarray(t, dtype=float))


def serialise_roundtrip(model, tmp_path):
    """Writes the model's leaves to disk and reads them back into a model of the same
    structure."""
    path = tmp_path / "model.eqx"
    eqx.tree_serialise_leaves(path, model)
    skeleton = jax.tree_util.tree_map(lambda a: jnp.zeros_like(a) if eqx.is_array(a) else a, model)
    return eqx.tree_deserialise_leaves(path, skeleton)


def run_python(code: str, **env: str) -> str:
    """Runs `code` in a fresh Python with the environment variables `env` set (they are read
    when cakejax or Equinox is imported or traced), asserts that it exits cleanly, and
    returns what it printed."""
    out = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout
