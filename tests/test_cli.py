"""The command line's own behaviour: its version, its dispatch to each command (stubbed here;
the commands themselves are tested in test_tour.py, test_transforms.py and test_bake.py) and its
refusal of unknown commands."""

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import pytest

import cakejax as cj
from cakejax import _cli


VERSION = importlib.metadata.version("cakejax")


def test_version_is_the_installed_metadata():
    assert cj.__version__ == VERSION


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"cakejax {VERSION}\n"


def _console_script() -> str:
    # The script pip wrote beside this interpreter (a virtual environment's bin/), else PATH's.
    beside = Path(sys.executable).with_name("cakejax" + (".exe" if os.name == "nt" else ""))
    found = str(beside) if beside.exists() else shutil.which("cakejax")
    if found is None:
        pytest.skip("the cakejax console script is not installed (pip install -e .)")
    return found


@pytest.mark.parametrize("command", ["script", "module"])
def test_version_flag_from_the_shell(command):
    argv = [_console_script()] if command == "script" else [sys.executable, "-m", "cakejax"]
    out = subprocess.run(
        [*argv, "--version"], capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"cakejax {VERSION}\n"


def test_unknown_command_is_argparse_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _cli.main(["frost"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: cakejax")
    assert "invalid choice: 'frost'" in err


def test_a_command_is_required(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _cli.main([])
    assert exit_info.value.code == 2
    assert "required: command" in capsys.readouterr().err


def test_bake_refuses_negative_customers(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _cli.main(["bake", "--customers", "-1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "cakejax bake: error: argument --customers: must be >= 0, got -1" in err


@pytest.mark.parametrize(
    "text, value",
    [("0", 0), ("100000", 100000), ("100_000", 100000), ("1e5", 100000), ("2E3", 2000)],
)
def test_bake_customers_as_written(text, value):
    assert _cli.customers(text) == value


@pytest.mark.parametrize("text", ["1.5", "abc", "1e400", "nan", "", "-1e3"])
def test_bake_refuses_customers_that_are_no_whole_number(capsys, text):
    with pytest.raises(SystemExit) as exit_info:
        _cli.main(["bake", f"--customers={text}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "cakejax bake: error: argument --customers: " in err
    assert "_count" not in err and "customers value" not in err, err
    assert "must be >= 0" in err if text == "-1e3" else "expected a whole number" in err, err


@pytest.mark.parametrize("passed", [True, False])
def test_tour_dispatch_and_exit_status(monkeypatch, passed):
    from cakejax import _tour

    seen = []
    monkeypatch.setattr(_tour, "run", lambda: seen.append(jax.config.jax_enable_x64) or passed)
    before = jax.config.jax_enable_x64
    try:
        assert _cli.main(["tour", "--x64"]) == (0 if passed else 1)
    finally:
        jax.config.update("jax_enable_x64", before)
    assert seen == [True]


def test_transforms_dispatch(monkeypatch, capsys):
    from cakejax import _transforms

    monkeypatch.setattr(_transforms, "table", lambda: "| the table |")
    assert _cli.main(["transforms"]) == 0
    assert capsys.readouterr().out == "| the table |\n"


def test_bake_dispatch(monkeypatch):
    from cakejax import _bake_command

    calls = []
    monkeypatch.setattr(_bake_command, "run", lambda *args: calls.append(args) or 0)
    assert _cli.main(["bake", "--customers", "3", "--plot", "out.png"]) == 0
    assert _cli.main(["bake"]) == 0
    assert calls == [(3, "out.png"), (0, None)]
