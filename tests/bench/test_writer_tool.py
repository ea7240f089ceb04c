"""`python -m bench.writer` stores batches through the app's writer and prints what each kind
of batch costs (the figures are printed, never judged)."""

from __future__ import annotations

import re

import pytest

from tests.bench.test_bench_smoke import run_bench


@pytest.mark.slow
def test_the_writer_tool_prints_the_cost_of_both_kinds_of_batch() -> None:
    lines = run_bench("bench.writer", "--batch", "4", "--batches", "5", timeout=120).splitlines()
    for kind in ("new", "later"):
        pattern = rf"sqlite: batches of 4 {kind} messages: [\d.]+ ms wall, [\d.]+ ms CPU a batch"
        assert any(re.match(pattern, line) for line in lines), "\n".join(lines)
