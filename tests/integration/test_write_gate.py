"""SQLite's writers take turns (adapters/db/database.py, WriteGate): a second writer waits for
the first to commit instead of failing, in the same process or in another (the web and delivery
processes), and a transaction that ends any way at all (commit, rollback after an error, a
session closed without either) lets the next one in."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import textwrap
from asyncio.subprocess import Process
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine

from slackrouter.adapters.db.database import (
    WriteGate,
    _lock_file,
    _sqlite_pragmas,
    create_engine,
    session_factory,
)
from slackrouter.adapters.db.migrate import upgrade
from slackrouter.adapters.db.models import Rep

TEAM = "T0001"
HANG_GUARD = 20.0  # seconds: a gate never given back would hang the test, not fail it


@pytest.fixture
async def sqlite_sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/gate.db")
    await upgrade(engine)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


async def reps(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Rep)) or 0)


async def test_a_second_writer_waits_for_the_first_to_commit_and_both_are_stored(
    sqlite_sessions: async_sessionmaker[AsyncSession],
) -> None:
    steps: list[str] = []
    first_wrote = asyncio.Event()

    async def first() -> None:
        async with sqlite_sessions() as session, session.begin():
            session.add(Rep(team_id=TEAM, user_id="U0FIRST"))
            await session.flush()
            session.add(Rep(team_id=TEAM, user_id="U0FIRST2"))  # a second write, same turn
            await session.flush()
            steps.append("first wrote")
            first_wrote.set()
            await asyncio.sleep(0.2)  # holds the write lock across an await
            steps.append("first commits")

    async def second() -> None:
        await first_wrote.wait()
        async with sqlite_sessions() as session, session.begin():
            session.add(Rep(team_id=TEAM, user_id="U0SECOND"))
            await session.flush()
            steps.append("second wrote")

    await asyncio.wait_for(asyncio.gather(first(), second()), HANG_GUARD)
    assert steps == ["first wrote", "first commits", "second wrote"]
    assert await reps(sqlite_sessions) == 3


async def test_a_failed_or_abandoned_transaction_lets_another_connection_write(
    sqlite_sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sqlite_sessions() as session, session.begin():
        session.add(Rep(team_id=TEAM, user_id="U0ONE"))
    failing, abandoned, other = sqlite_sessions(), sqlite_sessions(), sqlite_sessions()
    for session in (failing, abandoned, other):
        await session.connection()  # each on a connection of its own, all checked out

    failing.add(Rep(team_id=TEAM, user_id="U0ONE"))  # the same rep twice
    with pytest.raises(IntegrityError):
        await failing.flush()
    await failing.rollback()
    abandoned.add(Rep(team_id=TEAM, user_id="U0ABANDONED"))
    await abandoned.flush()
    await abandoned.close()  # neither committed nor rolled back by the caller

    other.add_all([Rep(team_id=TEAM, user_id="U0NEXT"), Rep(team_id=TEAM, user_id="U0LAST")])
    await asyncio.wait_for(other.commit(), HANG_GUARD)
    await failing.close()
    await other.close()
    assert await reps(sqlite_sessions) == 3  # U0ONE, U0NEXT and U0LAST


HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from slackrouter.adapters.db.database import create_engine, session_factory
    from slackrouter.adapters.db.models import Rep

    async def main() -> None:
        engine = create_engine(sys.argv[1])
        async with session_factory(engine)() as session, session.begin():
            session.add(Rep(team_id="T0001", user_id="U0OTHERPROCESS"))
            await session.flush()
            print("holding", flush=True)
            await asyncio.sleep(float(sys.argv[2]))
        await engine.dispose()

    asyncio.run(main())
    """
)


@pytest.fixture
async def database_file(tmp_path: Path) -> Path:
    """A migrated SQLite file, no engine left open on it."""
    path = tmp_path / "gate.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    await upgrade(engine)
    await engine.dispose()
    return path


@contextlib.asynccontextmanager
async def writing_elsewhere(path: Path, seconds: float) -> AsyncIterator[Process]:
    """Another process holding a write transaction open on `path` for `seconds`: entered once
    it has written; the process is killed if the test leaves before it ends."""
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLDER,
        f"sqlite+aiosqlite:///{path}",
        str(seconds),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert (await asyncio.wait_for(holder.stdout.readline(), HANG_GUARD)).strip() == b"holding"
        yield holder
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()


async def test_a_writer_in_another_process_is_waited_for_at_the_gate(database_file: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{database_file}")

    # SQLite's own wait off in this process: a writer that met the other's lock would fail.
    def no_busy_wait(dbapi_connection: object, _record: object) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout=0")  # type: ignore[attr-defined]

    event.listen(engine.sync_engine, "connect", no_busy_wait)
    sessions = session_factory(engine)
    try:
        async with writing_elsewhere(database_file, 0.5) as holder:
            async with sessions() as session, session.begin():
                session.add(Rep(team_id=TEAM, user_id="U0THISPROCESS"))
            assert await asyncio.wait_for(holder.wait(), HANG_GUARD) == 0
        assert await reps(sessions) == 2
    finally:
        await engine.dispose()


async def test_a_writer_that_waits_too_long_fails_and_leaves_the_gate_working(
    database_file: Path,
) -> None:
    impatient = _create_async_engine(
        f"sqlite+aiosqlite:///{database_file}", connect_args={"timeout": 30}
    )
    event.listen(impatient.sync_engine, "connect", _sqlite_pragmas)
    WriteGate(_lock_file(database_file), timeout=0.2).attach(impatient)
    sessions = session_factory(impatient)
    try:
        async with writing_elsewhere(database_file, 1.0) as holder:
            with pytest.raises(OperationalError, match="database is locked"):
                async with sessions() as session, session.begin():
                    session.add(Rep(team_id=TEAM, user_id="U0TOOEARLY"))
            assert await asyncio.wait_for(holder.wait(), HANG_GUARD) == 0
        for user_id in ("U0AFTER", "U0AGAIN"):  # the abandoned wait kept nothing
            async with sessions() as session, session.begin():
                session.add(Rep(team_id=TEAM, user_id=user_id))
        assert await reps(sessions) == 3  # U0OTHERPROCESS, U0AFTER and U0AGAIN
    finally:
        await impatient.dispose()


async def test_a_writer_waiting_at_the_gate_leaves_the_process_serving(
    database_file: Path,
) -> None:
    """SQLite is used from the event loop's thread (adapters/db/inline_sqlite.py): a writer
    that met SQLite's lock there would stop the whole process until it was given. It waits at
    the gate instead, and the process's other requests go on: a read answers meanwhile."""
    engine = create_engine(f"sqlite+aiosqlite:///{database_file}")
    sessions = session_factory(engine)

    async def write() -> None:
        async with sessions() as session, session.begin():
            session.add(Rep(team_id=TEAM, user_id="U0THISPROCESS"))

    try:
        async with writing_elsewhere(database_file, 2.0) as holder:
            writer = asyncio.create_task(write())
            await asyncio.sleep(0.05)  # the writer is at the gate
            seen = await asyncio.wait_for(reps(sessions), HANG_GUARD)
            assert not writer.done()  # still waiting for the other process
            assert seen == 0  # the other process has not committed
            await asyncio.wait_for(writer, HANG_GUARD)
            assert await asyncio.wait_for(holder.wait(), HANG_GUARD) == 0
        assert await reps(sessions) == 2
    finally:
        await engine.dispose()
