"""The website's webhook down: reps' replies reach it, signed and with an idempotency key, once
it is back; a webhook still refused after a day of retries is marked failed.

The module's tests share one app, fake Slack, database and website (each test with a chatflow of
its own), and run in the module's event loop."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
import pytest_asyncio
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from slackrouter.adapters.db.models import Chatflow, OutboxItem
from slackrouter.api.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from slackrouter.sandbox.server import serve
from tests.resilience.harness import (
    TAG,
    AppProcess,
    Deployment,
    FiguresLog,
    Load,
    Store,
    all_posted,
    conversations,
    deployment,
    eventually,
    members,
    new_tag,
    reps,
    running,
    send,
    tally,
    until_routed,
)

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

REP = reps(1)[0]
VISITORS = 5


@dataclass(frozen=True)
class Call:
    """A webhook call the website took: the reply tags in it, its idempotency key, and why its
    signature does not verify (None when it does)."""

    tags: tuple[str, ...]
    key: str
    problem: str | None


@dataclass
class Website:
    """The site's webhook endpoint: answers 503 while `down`, 200 otherwise; keeps the calls it
    took and counts those it refused. `secrets` are the chatflows' signing secrets by id."""

    down: bool = True
    refused: int = 0
    taken: list[Call] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)

    async def hook(self, request: Request) -> Response:
        if self.down:
            self.refused += 1
            return Response(status_code=503)
        raw = await request.body()
        body = json.loads(raw)
        problem = verify(
            self.secrets.get(str(body.get("chatflow_id")), ""),
            request.headers.get(TIMESTAMP_HEADER),
            request.headers.get(SIGNATURE_HEADER),
            raw,
        )
        tags = tuple(TAG.findall(json.dumps(body.get("message"))))
        self.taken.append(Call(tags, request.headers.get("Idempotency-Key", ""), problem))
        return Response(status_code=200)


@dataclass
class Setup:
    env: Deployment
    app: AppProcess
    site: Website
    chatflows: tuple[Chatflow, Chatflow]  # one per test, both calling `site`


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def setup(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Setup]:
    workdir = tmp_path_factory.mktemp("webhook-outage")
    site = Website()
    hook = Starlette(routes=[Route("/hook", site.hook, methods=["POST"])])
    async with (
        serve(hook) as site_url,
        deployment("sqlite", workdir, members([REP])) as env,
    ):
        chatflows = [
            await env.store.chatflow(
                [REP], name=name, webhook_url=f"{site_url}/hook", escalation_seconds=3600
            )
            for name in ("Back", "Gone")
        ]
        site.secrets = {chatflow.id: chatflow.signing_secret for chatflow in chatflows}
        app = env.app()
        async with running(app):
            await until_routed(env.store, [REP])
            await env.slack.send_events_to(app.url)
            yield Setup(env, app, site, (chatflows[0], chatflows[1]))


async def replies_to_every_chat(setup: Setup, chatflow: Chatflow) -> tuple[set[str], set[str]]:
    """Visitors start chats; the rep answers each in its thread. Returns the replies' tags and
    the conversations."""
    env = setup.env
    load = await send([setup.app.url], chatflow.public_key, conversations(VISITORS, 1), Load())
    posts = await all_posted(env.slack, load.tags)
    replies: set[str] = set()
    for post in posts:
        if post.thread_ts is None and set(post.tags) & load.tags:
            tag = new_tag()
            await env.slack.reply(REP, post.channel, post.ts, f"{tag} yes, we ship to Norway")
            replies.add(tag)

    async def all_owed() -> bool:
        return len(await webhooks(env.store, load.conversation_ids)) == len(replies)

    await eventually(all_owed, within=30, what="every reply is owed to the website")
    return replies, load.conversation_ids


async def webhooks(store: Store, conversation_ids: set[str]) -> list[OutboxItem]:
    return [i for i in await store.outbox("webhook") if i.conversation_id in conversation_ids]


async def test_replies_reach_the_website_once_its_webhook_is_back(
    setup: Setup, figures: FiguresLog
) -> None:
    site, store = setup.site, setup.env.store
    site.down = True
    replies, chats = await replies_to_every_chat(setup, setup.chatflows[0])

    async def retried() -> bool:
        return all(item.attempts >= 2 for item in await webhooks(store, chats))

    await eventually(retried, within=60, what="every webhook call is tried twice")
    refused = site.refused
    site.down = False
    await store.settled()
    items = await webhooks(store, chats)
    taken = [call for call in site.taken if set(call.tags) & replies]
    result = tally("webhook down, then back", replies, [call.tags for call in taken])
    figures.record(result)
    assert refused >= 2 * len(replies)
    assert [item.status for item in items] == ["done"] * len(replies)
    assert result.lost == 0
    assert result.duplicated == 0
    assert [call.problem for call in taken] == [None] * len(taken), "signatures do not verify"
    keys = {call.key for call in taken}
    assert len(keys) == len(replies) and "" not in keys, "one idempotency key per reply"


async def test_a_webhook_refused_for_a_day_is_marked_failed(
    setup: Setup, figures: FiguresLog
) -> None:
    site, store = setup.site, setup.env.store
    site.down = True
    replies, chats = await replies_to_every_chat(setup, setup.chatflows[1])

    async def refused() -> bool:
        return all(item.attempts >= 1 for item in await webhooks(store, chats))

    await eventually(refused, within=30, what="every webhook call is refused once")
    # A day of refusals, without waiting a day: the calls were first owed a day ago.
    async with store.sessions() as session, session.begin():
        for item in await session.scalars(
            select(OutboxItem).where(
                OutboxItem.kind == "webhook", OutboxItem.conversation_id.in_(chats)
            )
        ):
            item.created_at -= timedelta(days=1, minutes=1)
    await store.settled()
    items = await webhooks(store, chats)
    figures.record(tally("webhook down for good", replies, []))
    assert [item.status for item in items] == ["failed"] * len(replies)
    assert all("503" in (item.last_error or "") for item in items)
