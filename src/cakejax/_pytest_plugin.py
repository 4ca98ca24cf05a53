"""cakejax's pytest plugin, registered through the `pytest11` entry point: installed with
cakejax, it gives every test suite in the environment these fixtures.

- `assert_layer(layer, *example_args, **options)`: `cakejax.testing.assert_layer`, its random
  directions drawn from `--cakejax-seed` (default 0) unless a `key` is given.
- `check_layer(...)`: the same for `cakejax.testing.check_layer` (returns the report).
- `jax_float64`: runs the test with `jax_enable_x64` on (finite-difference checks are
  sharpest in float64).

It works beside jaxtyping's plugin (`pytest --jaxtyping-packages=mypackage,beartype.beartype`):
a layer whose annotations that hook checks is checked the same way.
"""

import pytest


def pytest_addoption(parser):
    parser.getgroup("cakejax").addoption(
        "--cakejax-seed",
        type=int,
        default=0,
        help="seed of the random directions of cakejax.testing's checks (default 0)",
    )


def _seeded(request, check):
    import jax

    seed = request.config.getoption("cakejax_seed")

    def run(layer, *example_args, **options):
        options.setdefault("key", jax.random.key(seed))
        return check(layer, *example_args, **options)

    return run


@pytest.fixture
def assert_layer(request):
    """`cakejax.testing.assert_layer`, seeded by `--cakejax-seed`."""
    from cakejax import testing

    return _seeded(request, testing.assert_layer)


@pytest.fixture
def check_layer(request):
    """`cakejax.testing.check_layer`, seeded by `--cakejax-seed`."""
    from cakejax import testing

    return _seeded(request, testing.check_layer)


@pytest.fixture
def jax_float64():
    """Runs the test in float64 (`jax_enable_x64`)."""
    import jax

    with jax.enable_x64(True):
        yield
