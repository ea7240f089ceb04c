"""A database made for one run of `slackrouter run` processes (a resilience test, a benchmark)
and what both ask of it: a SQLite file, or a PostgreSQL database created for the run and dropped
after it, migrated with `slackrouter migrate` as a deploy step does."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import func, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from slackrouter.adapters.db.database import create_engine, session_factory
from slackrouter.adapters.db.models import Chatflow, OutboxItem, Rep
from slackrouter.clock import utcnow
from slackrouter.config import normalize_database_url
from slackrouter.sandbox.processes import eventually, migrate
from slackrouter.services.chatflows import ChatflowSpec, create_chatflow

TEAM_ID = "T0001"  # the fake Slack's workspace


@dataclass
class ScratchDatabase:
    """The app's database as the test or the benchmark sees it; `url` is the app's
    DATABASE_URL, `kind` "sqlite" or "postgresql"."""

    kind: str
    url: str
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    async def chatflow(
        self, route: Sequence[str], *, name: str = "Sales", **columns: Any
    ) -> Chatflow:
        """A chatflow made with the Python API, then given `columns` (assignment,
        escalation_seconds, offline_fallback, webhook_url ...)."""
        chatflow = await create_chatflow(
            self.sessions,
            team_id=TEAM_ID,
            spec=ChatflowSpec(name=name, route_users=tuple(route)),
            clock=utcnow,
        )
        if columns:
            async with self.sessions() as session, session.begin():
                await session.execute(
                    update(Chatflow).where(Chatflow.id == chatflow.id).values(**columns)
                )
        return chatflow

    async def active_reps(self, user_ids: Iterable[str]) -> int:
        """How many of these reps the app has seen active in Slack."""
        async with self.sessions() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(Rep)
                .where(Rep.user_id.in_(list(user_ids)), Rep.presence == "active")
            )
        return int(count or 0)

    async def until_available(self, user_ids: Sequence[str], within: float = 60) -> None:
        """Wait until the app has polled these reps' presence and sees each one active."""

        async def active() -> bool:
            return await self.active_reps(user_ids) == len(user_ids)

        await eventually(active, within=within, what="the app sees the reps active", interval=0.1)

    async def unfinished(self) -> int:
        """Outbox rows neither done nor failed."""
        async with self.sessions() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(OutboxItem)
                .where(OutboxItem.status.not_in(("done", "failed")))
            )
        return int(count or 0)


D = TypeVar("D", bound=ScratchDatabase)


@contextlib.asynccontextmanager
async def scratch_database(
    as_type: type[D], kind: str, workdir: Path, *, server_url: str, prefix: str
) -> AsyncIterator[D]:
    """An empty, migrated database of `kind`, as an `as_type`: the SQLite file `<prefix>….db` in
    `workdir`, or the new database `<prefix>…` on the PostgreSQL server at `server_url`, dropped
    at the end (the app reads DATABASE_URL only, so a schema of a database would not do)."""
    admin: asyncpg.Connection | None = None
    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    if kind == "sqlite":
        url = f"sqlite:///{workdir / (name + '.db')}"
    else:
        server = make_url(server_url).set(drivername="postgresql")
        admin = await asyncpg.connect(server.render_as_string(hide_password=False))
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = server.set(database=name).render_as_string(hide_password=False)
    try:
        await migrate(url, workdir)
        engine = create_engine(normalize_database_url(url))
        try:
            yield as_type(kind, url, engine, session_factory(engine))
        finally:
            await engine.dispose()
    finally:
        if admin is not None:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
