"""Alembic environment: migrations run on a connection handed over by
`slackrouter.adapters.db.migrate`, or, from the `alembic` command line, on an engine built
from DATABASE_URL."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from slackrouter.adapters.db import slack_oauth  # noqa: F401  (its tables join Base)
from slackrouter.adapters.db.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_from_url() -> None:
    from slackrouter.adapters.db.database import create_engine
    from slackrouter.config import load_settings

    engine = create_engine(load_settings().database_url)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    asyncio.run(_run_from_url())
