"""`python -m bench.delivery` lets the app's worker process drain a backlog and prints what a
Slack post costs it (the figures are printed, never judged)."""

from __future__ import annotations

import re

import pytest

from tests.bench.test_bench_smoke import run_bench


@pytest.mark.slow
def test_the_delivery_tool_prints_the_posts_made_and_their_cost() -> None:
    stdout = run_bench("bench.delivery", "--load", "1", "--seconds", "3", timeout=180)
    found = re.search(
        r"sqlite: ([\d.]+) posts/s, ([\d.]+) ms of delivery CPU a post \((\d+) posts in 3 s "
        r"after (\d+) messages",
        stdout,
    )
    assert found is not None, stdout
    rate, _, posts, sent = found.groups()
    # Slack took the posts the backlog held: some each second, no more than were sent.
    assert 0 < int(posts) <= int(sent) and float(rate) > 0, stdout
