"""The website's webhook down: reps' replies reach it, signed and with an idempotency key, once
it is back; a webhook still refused after a day of retries is marked failed."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from slackrouter.adapters.db.models import OutboxItem
from slackrouter.api.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from slackrouter.sandbox.server import serve
from tests.resilience.harness import (
    TAG,
    AppProcess,
    FiguresLog,
    Load,
    SlackProcess,
    Store,
    all_posted,
    app_settings,
    conversations,
    eventually,
    fresh_store,
    members,
    new_tag,
    reps,
    running,
    send,
    slack_process,
    tally,
    until_routed,
)

REP = reps(1)[0]
VISITORS = 5


@dataclass
class Website:
    """The site's webhook endpoint: answers 503 while `down`, 200 otherwise, and keeps every
    call it answered 200 (`taken`) and how many it refused."""

    secret: str
    down: bool = True
    refused: int = 0
    taken: list[dict[str, str]] = field(default_factory=list)  # tags, key, signature problem

    async def hook(self, request: Request) -> Response:
        if self.down:
            self.refused += 1
            return Response(status_code=503)
        raw = await request.body()
        body = json.loads(raw)
        self.taken.append(
            {
                "tags": " ".join(TAG.findall(json.dumps(body.get("message")))),
                "key": request.headers.get("Idempotency-Key", ""),
                "problem": verify(
                    self.secret,
                    request.headers.get(TIMESTAMP_HEADER),
                    request.headers.get(SIGNATURE_HEADER),
                    raw,
                )
                or "",
            }
        )
        return Response(status_code=200)


@pytest.fixture
async def website() -> AsyncIterator[tuple[Website, str]]:
    site = Website(secret="")
    async with serve(Starlette(routes=[Route("/hook", site.hook, methods=["POST"])])) as url:
        yield site, f"{url}/hook"


async def replies_to_every_chat(
    store: Store, slack: SlackProcess, app: AppProcess, public_key: str
) -> set[str]:
    """Visitors start chats; the rep answers each in its thread. Returns the replies' tags."""
    load = await send([app.url], public_key, conversations(VISITORS, 1), Load())
    posts = await all_posted(slack, load.tags)
    await slack.send_events_to(app.url)
    replies: set[str] = set()
    for post in posts:
        if post.thread_ts is None and set(post.tags) & load.tags:
            tag = new_tag()
            await slack.reply(REP, post.channel, post.ts, f"{tag} yes, we ship to Norway")
            replies.add(tag)

    async def all_owed() -> bool:
        return len(await store.outbox("webhook")) == len(replies)

    await eventually(all_owed, within=30, what="every reply is owed to the website")
    return replies


@pytest.mark.slow
async def test_replies_reach_the_website_once_its_webhook_is_back(
    tmp_path: Path, website: tuple[Website, str], figures: FiguresLog
) -> None:
    site, hook_url = website
    async with (
        fresh_store("sqlite", tmp_path) as store,
        slack_process(tmp_path, members([REP])) as slack,
    ):
        chatflow = await store.chatflow([REP], webhook_url=hook_url, escalation_seconds=3600)
        site.secret = chatflow.signing_secret
        app = AppProcess("app", tmp_path, app_settings(store, slack, tmp_path))
        async with running(app):
            await until_routed(store, [REP])
            replies = await replies_to_every_chat(store, slack, app, chatflow.public_key)

            async def retried() -> bool:
                return all(item.attempts >= 2 for item in await store.outbox("webhook"))

            await eventually(retried, within=60, what="every webhook call is tried twice")
            site.down = False
            await store.settled()
            items = await store.outbox("webhook")
            result = tally(
                "webhook down, then back",
                replies,
                [call["tags"].split() for call in site.taken],
                refused=site.refused,
            )
            figures.record(result)
            assert [item.status for item in items] == ["done"] * len(replies)
            assert result.lost == 0
            assert result.duplicated == 0
            assert [call["problem"] for call in site.taken] == [""] * len(site.taken)
            keys: defaultdict[str, set[str]] = defaultdict(set)
            for call in site.taken:
                keys[call["tags"]].add(call["key"])
            assert all(len(k) == 1 and "" not in k for k in keys.values()), keys
            assert len({next(iter(k)) for k in keys.values()}) == len(replies)


@pytest.mark.slow
async def test_a_webhook_refused_for_a_day_is_marked_failed(
    tmp_path: Path, website: tuple[Website, str], figures: FiguresLog
) -> None:
    site, hook_url = website
    async with (
        fresh_store("sqlite", tmp_path) as store,
        slack_process(tmp_path, members([REP])) as slack,
    ):
        chatflow = await store.chatflow([REP], webhook_url=hook_url, escalation_seconds=3600)
        app = AppProcess("app", tmp_path, app_settings(store, slack, tmp_path))
        async with running(app):
            await until_routed(store, [REP])
            replies = await replies_to_every_chat(store, slack, app, chatflow.public_key)

            async def refused() -> bool:
                return all(item.attempts >= 1 for item in await store.outbox("webhook"))

            await eventually(refused, within=30, what="every webhook call is refused once")
            # A day of refusals, without waiting a day: the calls were first owed a day ago.
            async with store.sessions() as session, session.begin():
                for item in await session.scalars(
                    select(OutboxItem).where(OutboxItem.kind == "webhook")
                ):
                    item.created_at -= timedelta(days=1, minutes=1)
            await store.settled()
            items = await store.outbox("webhook")
            figures.record(tally("webhook down for good", replies, []))
            assert [item.status for item in items] == ["failed"] * len(replies)
            assert all("503" in (item.last_error or "") for item in items)
            assert not site.taken
