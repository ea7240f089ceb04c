"""The batch writer alone, in this process: what a batch of visitor messages costs to store.

    python -m bench.writer [--database sqlite|postgresql] [--batch 8] [--batches 150]

It stores batches of `--batch` messages straight through the app's `VisitorMessages` (no HTTP,
no delivery: `WORKER_PROCESS=inline`, nothing delivered), first each from a new visitor (every
message starts and routes a chat, round robin over 40 reps seen active), then a later message
of each of those visitors, and prints the wall and CPU time per batch of each kind. The ingest
figure of `python -m bench` is the whole app under load; this is the writer's share of it,
steady enough on a shared machine to compare two versions of the writer run after run.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench.stack import fresh_database, reps
from slackrouter.adapters.db.models import Rep
from slackrouter.bootstrap import build
from slackrouter.clock import utcnow
from slackrouter.config import load_settings
from slackrouter.sandbox.scratch_database import TEAM_ID
from slackrouter.services.visitor_messages import VisitorMessageIn, VisitorMessages

REPS = reps(40, "WRT")
WARM_UP = 20  # batches of new chats first, not counted


async def _active(sessions: async_sessionmaker[AsyncSession], now: datetime) -> None:
    """Every rep seen active, as the presence poller would have them."""
    async with sessions() as session, session.begin():
        for user_id in REPS:
            rep = await session.get(Rep, (TEAM_ID, user_id))
            if rep is None:
                rep = Rep(team_id=TEAM_ID, user_id=user_id)
                session.add(rep)
            rep.name = user_id
            rep.presence, rep.presence_checked_at = "active", now
            rep.dnd, rep.dnd_checked_at, rep.profile_checked_at = False, now, now


async def _batch(writer: VisitorMessages, key: str, visitors: list[str], message: int) -> None:
    await asyncio.gather(
        *(
            writer.receive(
                public_key=key,
                message=VisitorMessageIn(
                    visitor_id=visitor,
                    client_message_id=f"m{message}",
                    text="Hello, do you ship to Norway?",
                ),
                identity_verified=False,
            )
            for visitor in visitors
        )
    )


async def measure(kind: str, batch: int, batches: int) -> dict[str, tuple[float, float]]:
    """(wall ms, CPU ms) per batch of new chats ("new") and of later messages ("later")."""
    async with fresh_database(kind, Path(tempfile.mkdtemp(prefix="slackrouter-writer-"))) as db:
        chatflow = await db.chatflow(REPS, assignment="round_robin", escalation_seconds=3600)
        await _active(db.sessions, utcnow())
        settings = load_settings(
            {
                "DATABASE_URL": db.url,
                "SLACK_BOT_TOKEN": "xoxb-unused",
                "SLACK_SIGNING_SECRET": "unused",
                "SLACK_API_URL": "http://127.0.0.1:9/api/",  # nothing calls Slack here
                "WORKER_PROCESS": "inline",
                "PRESENCE_MAX_AGE": "3600",
            }
        )
        runtime = build(settings)
        try:
            prefix = uuid.uuid4().hex[:8]
            visitors = [[f"{prefix}-{b}-{i}" for i in range(batch)] for b in range(batches)]
            for b in range(WARM_UP):
                await _batch(
                    runtime.visitor_messages,
                    chatflow.public_key,
                    [f"{prefix}-warm-{b}-{i}" for i in range(batch)],
                    0,
                )
            figures = {}
            for name, message in (("new", 0), ("later", 1)):
                wall, cpu = time.perf_counter(), time.process_time()
                for group in visitors:
                    await _batch(runtime.visitor_messages, chatflow.public_key, group, message)
                figures[name] = (
                    (time.perf_counter() - wall) * 1000 / batches,
                    (time.process_time() - cpu) * 1000 / batches,
                )
            return figures
        finally:
            await runtime.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.writer", description=__doc__)
    parser.add_argument("--database", default="sqlite", choices=("sqlite", "postgresql"))
    parser.add_argument("--batch", type=int, default=8, help="messages a batch (default 8)")
    parser.add_argument("--batches", type=int, default=150, help="batches of each kind")
    args = parser.parse_args()
    figures = asyncio.run(measure(args.database, args.batch, args.batches))
    for name, (wall, cpu) in figures.items():
        print(
            f"{args.database}: batches of {args.batch} {name} messages: "
            f"{wall:.2f} ms wall, {cpu:.2f} ms CPU a batch ({args.batches} batches)"
        )


if __name__ == "__main__":
    main()
