"""The figures file shared by the resilience tests of one run.

Under pytest-xdist each worker has a temporary directory of its own inside the run's: the
figures go to the run's, so that one file holds them all. Workers' output is not shown, even with
`-s`; run `pytest -n 0 -s tests/resilience` to see the figures printed as they are measured."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.resilience.harness import FiguresLog


@pytest.fixture(scope="session")
def figures(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FiguresLog]:
    run = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        run = run.parent
    log = FiguresLog(run / "resilience-figures.txt")
    print(f"\nresilience figures go to {log.path}")
    yield log
    if log.path.exists():
        print(f"\nresilience figures ({log.path}):\n{log.path.read_text()}")
