"""The tour: every check passes, a wrong number makes it fail, and the command runs."""

import subprocess
import sys

import pytest

from cakejax import _course as course, _tour


def test_every_tour_check_agrees_with_course():
    # float32 here; float64 through the command below.
    failed = [check.name for check in _tour.checks() if not check.ok]
    assert failed == []


def test_tour_fails_on_a_wrong_number(monkeypatch):
    monkeypatch.setattr(course, "LIKE_LOSS", 2.5)
    monkeypatch.setattr(_tour, "PARTS", _tour.PARTS[:1])  # the like model is in part 1
    lines = []
    assert _tour.run(lines.append) is False
    assert any(line.startswith("  ✗ like model: loss") for line in lines)


@pytest.mark.slow  # a fresh process running every part in float64
def test_tour_command():
    # The command line end to end, in float64 (float32 is covered in-process above).
    out = subprocess.run(
        [sys.executable, "-m", "cakejax", "tour", "--x64"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "✗" not in out.stdout
    assert "results agree with the course" in out.stdout
