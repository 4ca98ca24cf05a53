import jax
import pytest
from hypothesis import HealthCheck, settings


# As in Equinox's and optimistix's suites: no silent rank broadcasting, no silent dtype
# promotion between float32 and float64 arrays.
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")

# The precision fixtures below only enter a context, which every drawn example shares
# correctly; compiling on the first example makes per-example deadlines meaningless.
# Derandomised: every run of the suite draws the same examples, so that a red run means a
# regression, never bad luck (a new seed is a new test, tried on purpose). To explore with
# fresh random examples: `python -m pytest --hypothesis-profile=explore`.
_common = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
settings.register_profile("cakejax", derandomize=True, **_common)
settings.register_profile("explore", derandomize=False, **_common)
settings.load_profile("cakejax")


@pytest.fixture(
    params=[False, pytest.param(True, marks=pytest.mark.slow)], ids=["float32", "float64"]
)
def x64(request):
    """Runs the test in float32 and again in float64 (`jax_enable_x64`). The float64 twin is
    marked `slow`: the quick suite runs each such test once, the slow one the other dtype."""
    with jax.enable_x64(request.param):
        yield request.param


@pytest.fixture
def f64():
    """Runs the test in float64: finite-difference checks need the precision."""
    with jax.enable_x64(True):
        yield
