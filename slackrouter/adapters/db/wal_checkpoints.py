"""SQLite's WAL checkpoints, run by a thread of their own instead of inside a writer's commit.

By default the commit that takes SQLite's write-ahead log past 1,000 pages also copies them into
the database file and syncs both (an automatic checkpoint). Connections to a file are used from
the event loop's thread (`inline_sqlite`), so that commit stopped the whole process: under the
benchmark's flood of visitor messages the worker's commits took 15-38 ms, about three a second,
where the others took under 1 ms, and every message waiting on that worker waited with them.

Here the engine's connections never checkpoint (`wal_autocheckpoint=0`); a commit tells a
`WalCheckpoints`, whose thread checkpoints a moment later on a connection of its own, in SQLite's
passive mode: it copies what no reader still needs and waits for no one, and writers go on
appending to the log meanwhile. SQLite's C code runs without Python's GIL, so the copy and the
syncs cost the event loop nothing. A writer starts the log again from its beginning once a
checkpoint has copied all of it, as after an automatic one; a log written faster than it is
copied grows until one catches up, as it would with automatic checkpoints that a reader holds
back. The thread ends after a while without commits, and a later commit starts another: an
idle process, and every engine a test suite makes and drops, holds no thread.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# The writes of a busy moment are copied together, a few times a second.
CHECKPOINT_AFTER = 0.25
# A thread with nothing to checkpoint for this long ends (a commit starts another).
IDLE_FOR = 5.0


class WalCheckpoints:
    """Checkpoints one database file's write-ahead log, in a thread, after commits."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._committed = threading.Event()
        self._running = False

    def committed(self, *_: Any) -> None:
        """A transaction committed: checkpoint soon (SQLAlchemy's `commit` event)."""
        with self._lock:
            self._committed.set()
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="sqlite-checkpoints", daemon=True).start()

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        try:
            while self._committed.wait(IDLE_FOR) or not self._stop_if_idle():
                time.sleep(CHECKPOINT_AFTER)  # the commits of a busy moment, copied together
                self._committed.clear()
                connection = connection or self._connect()
                if connection is not None:
                    self._checkpoint(connection)
        finally:
            if connection is not None:
                connection.close()

    def _stop_if_idle(self) -> bool:
        with self._lock:
            if self._committed.is_set():
                return False
            self._running = False
            return True

    def _connect(self) -> sqlite3.Connection | None:
        try:
            # mode=rw: a database removed meanwhile is not made again, empty.
            return sqlite3.connect(f"file:{self._path}?mode=rw", uri=True, check_same_thread=False)
        except sqlite3.Error as exc:
            log.debug("no checkpoint of %s: %s", self._path, exc)
            return None

    def _checkpoint(self, connection: sqlite3.Connection) -> None:
        try:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            log.debug("checkpoint of %s failed: %s", self._path, exc)
