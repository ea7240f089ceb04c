"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from slackrouter.adapters.db import slack_oauth  # noqa: F401  (its tables join Base)
from slackrouter.adapters.db.database import create_engine
from slackrouter.adapters.db.migrate import alembic_config, pending_revisions, upgrade
from slackrouter.adapters.db.models import Base
from tests.conftest import Database


def all_revisions() -> list[str]:
    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1, "the migrations must form one line"
    return sorted(rev.revision for rev in script.walk_revisions())


async def test_migrations_match_the_models(database: Database) -> None:
    engine = create_engine(database.url, schema=database.schema)
    try:
        assert sorted(await pending_revisions(engine)) == all_revisions()
        await upgrade(engine)
        assert await pending_revisions(engine) == []

        def diff(connection: Connection) -> list:
            return compare_metadata(MigrationContext.configure(connection), Base.metadata)

        async with engine.connect() as connection:
            assert await connection.run_sync(diff) == []
        await upgrade(engine)  # applying again is harmless
    finally:
        await engine.dispose()
