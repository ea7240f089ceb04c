"""`python -m bench --quick` runs end to end and prints every figure (timings are never checked:
the benchmark prints figures, tests do not judge them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import ROWS

ROOT = Path(__file__).resolve().parents[2]


def run_bench(module: str, *args: str, timeout: float) -> str:
    """Run `python -m {module} {args}` from the repository as a user would; its stdout, once it
    has ended well."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_the_quick_benchmark_prints_every_figure(tmp_path: Path) -> None:
    stdout = run_bench("bench", "--quick", "--workdir", str(tmp_path), timeout=600)
    rows = {
        cells[0]: cells[1:-1]
        for line in stdout.splitlines()
        if line.startswith("| ")
        for cells in [[cell.strip() for cell in line.strip("|").split("|")]]
    }
    for _, label, _ in ROWS:
        assert label in rows, f"{label!r} missing from:\n{stdout}"
        measured = [value for value in rows[label] if value]
        assert measured, f"{label!r} has no value:\n{stdout}"
        for value in measured:
            assert not value.startswith(("failed", "not measured")), f"{label}: {value}"
    # What each accepted message costs, and where, is printed beside the ingest ratio.
    for value in rows["ingest throughput: app ÷ bare endpoint"]:
        if value:
            assert "CPU per message: app web " in value and ", machine " in value, value
