"""SQLite through aiosqlite's interface, run in the event loop's thread.

aiosqlite runs each call (a statement, a fetch, a commit) on a thread of its own and hands the
result back to the event loop: two thread switches, a wake-up of the loop through its self-pipe
and a turn of the loop, per call. For the short statements slackrouter runs (an index lookup,
a batch of inserts: 50-300 µs of SQLite's own work) that handoff cost the process more CPU than
the statement, and each waited its turn at the GIL behind the loop. Here each call runs at once,
where it is awaited.

What this gives up: a statement blocks the loop while SQLite runs it. Readers never wait in WAL
mode, and writers meet SQLite's write lock free, since they take turns at the WriteGate first
(`database.py`), so a statement waits for nothing but its own work.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Generator
from functools import partial
from typing import Any

import aiosqlite


class _RunNow:
    """aiosqlite's queue of calls for its thread, run as they are put: a call's future is done
    when `put_nowait` returns (so awaiting it does not give the loop a turn)."""

    def put_nowait(self, item: tuple[Any, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:  # handed to whoever awaits it, as aiosqlite's thread does
            if future is not None and not future.done():
                future.set_exception(exc)
        else:
            if future is not None and not future.done():
                future.set_result(result)


class InlineConnection(aiosqlite.Connection):
    """An aiosqlite connection without its thread."""

    def __init__(self, connector: Callable[[], sqlite3.Connection]) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._tx = _RunNow()  # type: ignore[assignment]

    def __await__(self) -> Generator[Any, None, aiosqlite.Connection]:
        return self._connect().__await__()  # no thread to start

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)


async def connect(path: str, *, busy_seconds: float) -> aiosqlite.Connection:
    """SQLAlchemy's `async_creator` for a SQLite file; `busy_seconds` is SQLite's own wait for
    its write lock (only a writer that does not take the gate can make it wait)."""
    return await InlineConnection(
        partial(sqlite3.connect, path, timeout=busy_seconds, check_same_thread=False)
    )
