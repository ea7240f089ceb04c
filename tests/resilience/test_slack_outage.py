"""Slack down, slow, unsure or rate-limited for a while: nothing lost, the backlog drains after,
and no message shows twice.

The module's tests share one app, fake Slack and SQLite database (starting them is most of a
test's time), each with visitors of its own, and run in the module's event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from slackrouter.adapters.db.models import Chatflow
from tests.resilience.harness import (
    AppProcess,
    Deployment,
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

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

POST = "chat.postMessage"
VISITORS, MESSAGES_EACH = 20, 3
REPS = reps(10)


@dataclass
class Site:
    env: Deployment
    app: AppProcess
    chatflow: Chatflow  # round robin over REPS


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    workdir = tmp_path_factory.mktemp("slack-outage")
    async with deployment("sqlite", workdir, members(REPS)) as env:
        chatflow = await env.store.chatflow(REPS, assignment="round_robin", escalation_seconds=3600)
        app = env.app()
        async with running(app):
            await until_routed(env.store, REPS)
            yield Site(env, app, chatflow)


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
    site: Site, mode: str, figures: FiguresLog
) -> None:
    slack, store = site.env.slack, site.env.store
    before = await slack.outage_counts(POST)
    await slack.outage(POST, mode)
    chats = conversations(VISITORS, MESSAGES_EACH)
    visitors = asyncio.create_task(send([site.app.url], site.chatflow.public_key, chats, Load()))
    try:

        async def struck() -> bool:
            # Where Slack refuses, every chat's first post has been refused twice (or, with the
            # answer lost, once); where it holds, the app's posting is held up.
            counts = (await slack.outage_counts(POST)).since(before)
            return {"error": counts.refused >= 2 * VISITORS, "hold": counts.held >= 1}.get(
                mode, counts.refused >= VISITORS
            )

        await eventually(struck, within=60, what=f"the app's posts meet the outage ({mode})")
        load = await visitors
        counts = (await slack.outage_counts(POST)).since(before)
    finally:
        await slack.outage(POST, "none")
        await asyncio.wait({visitors})  # once Slack is back, the visitors get through
    await all_posted(slack, load.tags)
    await store.settled()
    failed = await store.failed(load.conversation_ids)
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
        # The visitors were answered while Slack held the app's posts, not only once the app had
        # given up waiting for Slack.
        assert counts.holding == counts.held, "visitors waited for the app to give up"
    assert result.lost == 0
    assert result.duplicated == 0
    assert not failed, [(item.kind, item.last_error) for item in failed]


async def test_rate_limited_posts_wait_for_retry_after_and_all_arrive_once(
    site: Site, figures: FiguresLog
) -> None:
    slack, store = site.env.slack, site.env.store
    refusals = len([c for c in await slack.calls(POST) if c["status"] == 429])
    await slack.rate_limit(1.0, burst=2)  # Slack's one post a second per channel, enforced
    await slack.fail(POST, status=429, retry_after=2, times=8)  # and a burst of 429s
    try:
        load = await send([site.app.url], site.chatflow.public_key, conversations(8, 4), Load())
        await all_posted(slack, load.tags)
        await store.settled()
    finally:
        await slack.rate_limit(None)
    answers = [call["status"] for call in await slack.calls(POST)]
    failed = await store.failed(load.conversation_ids)
    result = tally(
        "slack rate-limited (429)",
        load.tags,
        [post.tags for post in await slack.posts()],
        answered_429=answers.count(429) - refusals,
        failed=len(failed),
    )
    figures.record(result)
    assert answers.count(429) - refusals >= 8
    assert result.lost == 0
    assert result.duplicated == 0
    assert not failed, [(item.kind, item.last_error) for item in failed]


async def test_a_post_slack_stalls_on_is_given_up_after_the_call_timeout_and_made_once(
    tmp_path: Path, figures: FiguresLog
) -> None:
    """SLACK_CALL_TIMEOUT: a post Slack does not answer is given up after that many seconds,
    kept from every worker for half as long again, then looked for in Slack and made (once)."""
    async with deployment("sqlite", tmp_path, members(REPS[:2])) as env:
        slack, store = env.slack, env.store
        chatflow = await store.chatflow(REPS[:2], assignment="round_robin", escalation_seconds=3600)
        app = env.app(SLACK_CALL_TIMEOUT="2")
        async with running(app):
            await until_routed(store, REPS[:2])
            await slack.outage(POST, "hold")
            try:
                load = await send([app.url], chatflow.public_key, conversations(2, 2), Load())

                async def given_up() -> bool:
                    # Posts were held, and the app hung up on each of them (held ones are never
                    # made: Slack was stalled, not slow).
                    counts = await slack.outage_counts(POST)
                    return counts.held >= 2 and counts.holding == 0

                await eventually(given_up, within=15, what="the app gives up its stalled posts")
                uncertain = [item for item in await store.outbox() if item.result]
                assert uncertain and all(item.result == {"uncertain": True} for item in uncertain)
            finally:
                await slack.outage(POST, "none")
            await all_posted(slack, load.tags)
            await store.settled()
            failed = await store.failed(load.conversation_ids)
            result = tally(
                "slack stalls past the call timeout",
                load.tags,
                [post.tags for post in await slack.posts()],
                held=(await slack.outage_counts(POST)).held,
                failed=len(failed),
            )
            figures.record(result)
            assert result.lost == 0
            assert result.duplicated == 0
            assert not failed, [(item.kind, item.last_error) for item in failed]
