"""The `cakejax` command line (`cakejax ...` or `python -m cakejax ...`)."""

import argparse

import jax

from . import __version__


def _tour(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from . import _tour

    return 0 if _tour.run() else 1


def _transforms(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from . import _transforms

    print(_transforms.table())
    return 0


def _bake(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from . import _bake_command

    return _bake_command.run(args.customers, args.plot)


def customers(text: str) -> int:
    """A number of customers: a whole number >= 0, written as an int (100000, 100_000) or in
    scientific notation (1e5); argparse reports a bad one under `cakejax bake`."""
    try:
        value = int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            number = float("nan")
        if not (number == number and abs(number) != float("inf") and number == int(number)):
            raise argparse.ArgumentTypeError(
                f"expected a whole number of customers (e.g. 100000 or 1e5), got {text!r}"
            ) from None
        value = int(number)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cakejax", description="The 'Baking with JAX Autodiff' course as a library."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # The subcommands are required and each one sets its handler, so every command that
    # parses is dispatched; argparse itself rejects an unknown one (exit status 2).
    commands = parser.add_subparsers(dest="command", required=True)
    tour = commands.add_parser(
        "tour", help="run the whole course through cakejax, checking every printed number"
    )
    tour.add_argument("--x64", action="store_true", help="run in float64 (jax_enable_x64)")
    tour.set_defaults(handler=_tour)
    transforms = commands.add_parser(
        "transforms", help="try every layer under every JAX transform and print the table"
    )
    transforms.set_defaults(handler=_transforms)
    bake = commands.add_parser(
        "bake", help="optimise the course's cake (and, with --customers, many customers')"
    )
    bake.add_argument(
        "--customers",
        type=customers,
        default=0,
        help="also optimise this many customers' recipes (progress bar)",
    )
    bake.add_argument(
        "--plot",
        metavar="PNG",
        help="write the score along the way to PNG (needs the plot extra: matplotlib)",
    )
    bake.add_argument("--x64", action="store_true", help="run in float64 (jax_enable_x64)")
    bake.set_defaults(handler=_bake)
    args = parser.parse_args(argv)

    if getattr(args, "x64", False):
        jax.config.update("jax_enable_x64", True)
    return args.handler(args, parser)
