"""`python -m bench.writer` stores batches through the app's writer and prints what each kind
of batch costs (the figures are printed, never judged)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.bench.test_bench_smoke import ROOT


@pytest.mark.slow
def test_the_writer_tool_prints_the_cost_of_both_kinds_of_batch() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.writer", "--batch", "4", "--batches", "5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    for kind in ("new", "later"):
        pattern = rf"sqlite: batches of 4 {kind} messages: [\d.]+ ms wall, [\d.]+ ms CPU a batch"
        assert any(re.match(pattern, line) for line in lines), done.stdout
