"""Engines and sessions. Nothing connects at import time: `create_engine` is called by bootstrap."""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine
from sqlalchemy.util import await_

from slackrouter.adapters.db import inline_sqlite
from slackrouter.adapters.db.wal_checkpoints import WalCheckpoints
from slackrouter.config import sqlite_path

# Every connection a process opens is kept, up to this many (the default pool's most: 5 kept and
# 10 overflow). Opening one costs: on SQLite a thread and a few statements, on PostgreSQL a
# server process, its startup and the driver's setup queries; and under load the default pool
# (5, then short-lived overflow) opens one for nearly every transaction past the fifth.
POOL_CONNECTIONS = 15
# A PostgreSQL connection back in the pool for longer than this is pinged before it is used.
IDLE_BEFORE_PING = 10.0
_CHECKED_IN = "slackrouter_checked_in"


def create_engine(database_url: str, *, schema: str | None = None) -> AsyncEngine:
    """An async engine; SQLite gets WAL and a busy timeout, and a file is used from the event
    loop's thread (`inline_sqlite`); PostgreSQL an optional schema."""
    kwargs: dict[str, Any] = {}
    if database_url.startswith("sqlite"):
        path = sqlite_path(database_url)
        if path is not None:  # a file; an in-memory database keeps its one connection
            path.parent.mkdir(parents=True, exist_ok=True)
            kwargs.update(pool_size=POOL_CONNECTIONS, max_overflow=0)
            kwargs["async_creator"] = partial(inline_sqlite.connect, str(path), busy_seconds=30)
        else:
            kwargs["connect_args"] = {"timeout": 30}
    elif schema:
        kwargs["connect_args"] = {"server_settings": {"search_path": schema}}
    if database_url.startswith("postgresql"):
        kwargs.update(pool_size=POOL_CONNECTIONS, max_overflow=0)
    engine = _create_async_engine(database_url, **kwargs)
    if database_url.startswith("postgresql"):
        event.listen(engine.sync_engine.pool, "checkin", _checked_in)
        event.listen(engine.sync_engine.pool, "checkout", _ping_if_idle)
    if database_url.startswith("sqlite"):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        if path is not None:
            event.listen(engine.sync_engine, "connect", _no_automatic_checkpoints)
            event.listen(engine.sync_engine, "commit", WalCheckpoints(path).committed)
        WriteGate(None if path is None else _lock_file(path)).attach(engine)
    return engine


def _checked_in(_dbapi_connection: Any, record: Any) -> None:
    if record is not None:
        record.info[_CHECKED_IN] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """Ping a connection that sat idle in the pool before handing it out; a dead one (the
    server restarted, a proxy closed it) is replaced (SQLAlchemy's pessimistic disconnect
    handling, DisconnectionError). SQLAlchemy's own `pool_pre_ping` pings at every checkout:
    three round trips with asyncpg (BEGIN, a statement, ROLLBACK), and a delivered Slack post
    checks out two connections. One used a moment ago is as good as pinged; a server restart
    just after fails the statements in flight, which the pool then replaces with the rest."""
    since = record.info.get(_CHECKED_IN)
    if since is None or time.monotonic() - since < IDLE_BEFORE_PING:
        return
    try:
        dbapi_connection.ping()
    except Exception as exc:
        raise DisconnectionError(f"an idle connection was dead: {exc}") from exc


_GATE_HELD = "slackrouter_write_gate"
_READS = ("SELECT", "PRAGMA", "EXPLAIN")


class WriteGate:
    """SQLite's writers take turns at its write lock through a gate: an asyncio lock among the
    writers of one process, then an exclusive `flock` on a file beside the database among the
    processes (the web process, the worker process, a second `slackrouter run`).

    SQLite has one writer at a time; a connection that finds the lock taken polls for it,
    sleeping up to 100 ms between tries (its busy handler), so under load the ingest writer and
    the delivery worker lose their turns asleep (statements of the ingest writer waited 80 ms on
    average under the latency benchmark). At the gate they queue instead, and a waiter in another
    process is woken by the kernel when the lock is given back. The gate is taken at a
    transaction's first write and given back once it has committed or rolled back, or when its
    connection goes back to the pool or is dropped: it is held exactly as long as SQLite's own
    lock, so it blocks nothing SQLite would not. Writers that do not use it (another tool on the
    same file) still meet SQLite's busy handler."""

    def __init__(self, lock_path: Path | None = None, timeout: float = 30.0) -> None:
        self._timeout = timeout
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._file = None if lock_path is None else _FileLock(lock_path)

    def attach(self, engine: AsyncEngine) -> None:
        sync_engine = engine.sync_engine
        event.listen(sync_engine, "before_cursor_execute", self._before_execute)
        # SQLAlchemy's commit, rollback and pool reset events fire before the driver's call:
        # given back there, the gate would let the next writer meet SQLite's lock still held.
        dialect = sync_engine.dialect
        dialect.do_commit = self._giving_back_after(dialect.do_commit)  # type: ignore[method-assign]
        dialect.do_rollback = self._giving_back_after(dialect.do_rollback)  # type: ignore[method-assign]
        pool = sync_engine.pool
        event.listen(pool, "checkin", lambda _conn, record: self._free(record))
        event.listen(pool, "invalidate", lambda _conn, record, _exc: self._free(record))

    def _giving_back_after(self, end: Callable[[Any], None]) -> Callable[[Any], None]:
        def ended(dbapi_connection: Any) -> None:
            try:
                end(dbapi_connection)
            finally:
                self._give_back(_info(dbapi_connection))

        return ended

    def _gate(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._loop is not loop:
            self._lock, self._loop = asyncio.Lock(), loop
        return self._lock

    def _before_execute(self, conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if conn.info.get(_GATE_HELD) or statement.lstrip()[:7].upper().startswith(_READS):
            return
        taken: list[bool] = []
        try:
            await_(asyncio.wait_for(self._take(taken), self._timeout))
        except BaseException as exc:
            if taken:  # taken just as the wait ended otherwise (cancelled): not kept by anyone
                self._open()
            if isinstance(exc, TimeoutError):
                raise OperationalError(statement, None, Exception("database is locked")) from None
            raise
        conn.info[_GATE_HELD] = self

    async def _take(self, taken: list[bool]) -> None:
        gate = self._gate()
        await gate.acquire()
        try:
            if self._file is not None:
                await self._file.acquire()
        except BaseException:
            gate.release()
            raise
        taken.append(True)

    def _free(self, record: Any) -> None:
        if record is not None:
            self._give_back(record.info)

    def _give_back(self, info: dict[str, Any]) -> None:
        if info.pop(_GATE_HELD, None) is not None:
            self._open()

    def _open(self) -> None:
        if self._file is not None:
            self._file.release()
        if self._lock is not None and self._lock.locked():
            self._lock.release()


def _info(dbapi_connection: Any) -> dict[str, Any]:
    try:
        info: dict[str, Any] = dbapi_connection.info
        return info
    except NotImplementedError:  # the dialect's first-connect checks, which hold no gate
        return {}


class _FileLock:
    """An exclusive `flock` on one file, taken without blocking the event loop: at once when it
    is free, else by a thread that sleeps in `flock` until the kernel hands it over. Each turn
    opens the file anew and closing it gives the lock back, so a wait abandoned in its thread
    can never give back a later turn's lock."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._held: int | None = None

    async def acquire(self) -> None:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            wait = _FlockWait(fd)
            try:
                await asyncio.shield(asyncio.get_running_loop().run_in_executor(None, wait.run))
            except BaseException:
                wait.abandon()  # cancelled (a timeout): the file is closed once the thread is done
                raise
        except BaseException:
            os.close(fd)
            raise
        self._held = fd

    def release(self) -> None:
        fd, self._held = self._held, None
        if fd is not None:
            os.close(fd)


class _FlockWait:
    """One wait for the lock in a thread; given up, the thread closes the file when done."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._guard = threading.Lock()
        self._abandoned = self._done = False

    def run(self) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        finally:
            with self._guard:
                self._done = True
                if self._abandoned:
                    os.close(self._fd)

    def abandon(self) -> None:
        with self._guard:
            self._abandoned = True
            if self._done:
                os.close(self._fd)


def _lock_file(database: Path) -> Path:
    """The file whose `flock` is SQLite's write gate among processes (WriteGate)."""
    return database.with_name(database.name + "-writer.lock")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _no_automatic_checkpoints(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA wal_autocheckpoint=0")  # WalCheckpoints' thread does it
    cursor.close()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
