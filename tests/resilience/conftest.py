"""The figures file shared by the resilience tests of one run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.resilience.harness import FiguresLog


@pytest.fixture(scope="session")
def figures(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FiguresLog]:
    log = FiguresLog(tmp_path_factory.mktemp("resilience") / "figures.txt")
    yield log
    if log.path.exists():
        print(f"\nresilience figures written to {log.path}:\n{log.path.read_text()}")
