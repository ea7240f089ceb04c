"""Slack down, slow, unsure or rate-limited for a while: nothing lost, the backlog drains after,
and no message shows twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.resilience.harness import (
    AppProcess,
    FiguresLog,
    Load,
    all_posted,
    app_settings,
    conversations,
    eventually,
    fresh_store,
    members,
    reps,
    running,
    send,
    slack_process,
    tally,
    until_routed,
)

POST = "chat.postMessage"
VISITORS, MESSAGES_EACH = 20, 3
REPS = reps(10)


@pytest.mark.slow
@pytest.mark.parametrize(
    "mode",
    [
        # Slack answers 500 and does nothing.
        "error",
        # Slack holds every post until it is back, then makes them.
        "hold",
        # Slack makes the post but answers 500 (its `internal_error`: "some aspect of the
        # operation may have succeeded"): a retry must look before posting again.
        "lost_answer",
    ],
)
async def test_posts_made_while_slack_is_down_arrive_once_when_it_is_back(
    mode: str, tmp_path: Path, figures: FiguresLog
) -> None:
    async with (
        fresh_store("sqlite", tmp_path) as store,
        slack_process(tmp_path, members(REPS)) as slack,
    ):
        chatflow = await store.chatflow(REPS, assignment="round_robin", escalation_seconds=3600)
        app = AppProcess("app", tmp_path, app_settings(store, slack, tmp_path))
        async with running(app):
            await until_routed(store, REPS)
            await slack.outage(POST, mode)
            chats = conversations(VISITORS, MESSAGES_EACH)
            visitors = asyncio.create_task(send([app.url], chatflow.public_key, chats, Load()))

            async def struck() -> bool:
                # Where Slack refuses, every chat's first post has been refused twice (or, with
                # the answer lost, once); where it holds, the app's posting is held up.
                counts = await slack.outage_counts(POST)
                return {"error": counts.refused >= 2 * VISITORS, "hold": counts.held >= 1}.get(
                    mode, counts.refused >= VISITORS
                )

            await eventually(struck, within=60, what=f"the app's posts meet the outage ({mode})")
            load = await visitors
            counts = await slack.outage_counts(POST)
            await slack.outage(POST, "none")
            await all_posted(slack, load.tags)
            await store.settled()
            failed = [item for item in await store.outbox() if item.status == "failed"]
            result = tally(
                f"slack down ({mode})",
                load.tags,
                [post.tags for post in await slack.posts()],
                refused=counts.refused,
                held=counts.held,
                failed=len(failed),
            )
            figures.record(result)
            assert not load.refused and len(load.tags) == VISITORS * MESSAGES_EACH
            assert not load.server_errors, f"visitors failed while Slack was down: {load.failures}"
            if mode == "hold":
                # The visitors were answered while Slack held the app's posts, not only once the
                # app had given up waiting for Slack.
                assert counts.holding == counts.held, "visitors waited for the app to give up"
            assert result.lost == 0
            assert result.duplicated == 0
            assert not failed, [(item.kind, item.last_error) for item in failed]


@pytest.mark.slow
async def test_rate_limited_posts_wait_for_retry_after_and_all_arrive_once(
    tmp_path: Path, figures: FiguresLog
) -> None:
    route = REPS[:4]  # a burst into few channels, over Slack's one post per second in each
    async with (
        fresh_store("sqlite", tmp_path) as store,
        slack_process(tmp_path, members(route)) as slack,
    ):
        chatflow = await store.chatflow(route, assignment="round_robin", escalation_seconds=3600)
        app = AppProcess("app", tmp_path, app_settings(store, slack, tmp_path))
        async with running(app):
            await until_routed(store, route)
            await slack.rate_limit(1.0, burst=2)
            await slack.fail(POST, status=429, retry_after=2, times=8)
            load = await send([app.url], chatflow.public_key, conversations(8, 4), Load())
            await all_posted(slack, load.tags)
            await store.settled()
            answers = [call["status"] for call in await slack.calls(POST)]
            failed = [item for item in await store.outbox() if item.status == "failed"]
            result = tally(
                "slack rate-limited (429)",
                load.tags,
                [post.tags for post in await slack.posts()],
                answered_429=answers.count(429),
                failed=len(failed),
            )
            figures.record(result)
            assert answers.count(429) >= 8
            assert result.lost == 0
            assert result.duplicated == 0
            assert not failed, [(item.kind, item.last_error) for item in failed]
