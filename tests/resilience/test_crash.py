"""`kill -9` in the middle of a load: every message the app answered 2xx reaches Slack after a
restart on the same database, once. Posts that were in flight when the process died (made in
Slack, not yet recorded) are not made again: each was leased before it was posted, and once the
lease has run out the restarted app finds it in Slack."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.resilience.harness import (
    FiguresLog,
    Load,
    all_posted,
    conversations,
    deployment,
    eventually,
    members,
    reps,
    running,
    send,
    tally,
    until_routed,
)

VISITORS, MESSAGES_EACH = 50, 6  # 300 messages
# A DM per chat (round robin), so that pacing posts per channel is no bottleneck; no more reps
# than the app polls for presence in one round (PRESENCE_CALLS_PER_MINUTE, 50).
REPS = reps(VISITORS)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_a_killed_app_delivers_every_accepted_message_after_a_restart(
    kind: str, tmp_path: Path, figures: FiguresLog
) -> None:
    async with deployment(kind, tmp_path, members(REPS)) as env:
        store, slack = env.store, env.slack
        chatflow = await store.chatflow(REPS, assignment="round_robin", escalation_seconds=3600)
        # A post in flight at the kill is taken again once its lease (1.5 times the call
        # timeout) has run out: 7.5 s here, against 45 with Slack's default of 30.
        app = env.app(SLACK_CALL_TIMEOUT="5")
        async with running(app):
            await until_routed(store, REPS)
            load = Load()
            chats = conversations(VISITORS, MESSAGES_EACH)
            visitors = asyncio.create_task(send([app.url], chatflow.public_key, chats, load))

            async def halfway() -> bool:
                return len(load.accepted) >= VISITORS * MESSAGES_EACH // 2

            await eventually(halfway, within=60, what="half the messages are accepted")
            app.kill()
            accepted_at_kill = len(load.accepted)
            # Posts owed at the kill; those already in Slack were in flight: made, not recorded.
            owed = await store.unfinished_tags()
            posted = {tag for post in await slack.posts() for tag in post.tags}
            in_flight = sum(1 for tag in owed if tag in posted)

            app.start()
            await app.ready()
            await visitors
            assert not load.refused, f"messages refused: {load.refused}"
            assert not load.server_errors, f"visitors got 5xx: {load.failures}"
            await all_posted(slack, load.tags)
            await store.settled()
            result = tally(
                f"crash ({kind})",
                load.tags,
                [post.tags for post in await slack.posts()],
                accepted_at_kill=accepted_at_kill,
                owed_at_kill=len(owed),
                in_flight_at_kill=in_flight,
                failed_requests=sum(load.failures.values()),
            )
            figures.record(result)
            assert all(a["status"] == "routed" for a in load.accepted.values())
            assert result.lost == 0
            assert result.duplicated == 0
