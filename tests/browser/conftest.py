"""The whole product in a real browser: uvicorn serving slackrouter, the fake Slack (with its
sandbox page for the reps), a shop's website on a third origin embedding the widget, SQLite, and
Debian's Chromium driven by Playwright's async API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect
from sqlalchemy import select, update
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from slackrouter.adapters.db.models import Chatflow, Conversation, SlackThread
from slackrouter.api.app import create_api
from slackrouter.bootstrap import Runtime, build
from slackrouter.clock import utcnow
from slackrouter.config import Settings
from slackrouter.sandbox.demo import demo_page
from slackrouter.sandbox.fake_slack import FakeSlack
from slackrouter.sandbox.server import serve
from slackrouter.services.chatflows import ChatflowSpec, create_chatflow
from tests.browser.chromium import keep_local, launch
from tests.scenario.conftest import eventually

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
ALICE, BOB, CAROL = "U0ALICE", "U0BOB", "U0CAROL"
# What a visitor sees usually comes within a second; the margin is for a busy machine.
WAIT_MS = 10_000
expect.set_options(timeout=WAIT_MS)


@dataclass
class Site:
    """The app, its Slack, and the website with the widget, each on its own origin."""

    app_url: str
    website_url: str
    sandbox_url: str
    slack: FakeSlack
    runtime: Runtime
    chatflow: Chatflow
    context: BrowserContext

    async def visit(self) -> Page:
        """A visitor opens the website; returns once the widget's launcher is there."""
        page = await self.context.new_page()
        await page.goto(self.website_url)
        await page.locator("[data-slackrouter]").get_by_role("button").last.wait_for()
        return page

    async def presence(self, **states: str) -> None:
        """Reps' Slack presence, as the app's poller sees it."""
        for user_id, state in states.items():
            self.slack.set_presence(user_id, state)
        await self.runtime.presence.refresh(pace=False)

    async def set_chatflow(self, **values: Any) -> None:
        async with self.runtime.sessions() as session, session.begin():
            await session.execute(
                update(Chatflow).where(Chatflow.id == self.chatflow.id).values(**values)
            )

    async def chat_posted(self, user_id: str) -> str:
        """The thread of the newest chat in a rep's DM, once the app has recorded it (a rep
        can only answer a post the app knows); returns its ts."""

        async def recorded() -> str | None:
            async with self.runtime.sessions() as session:
                return await session.scalar(
                    select(SlackThread.thread_ts)
                    .where(SlackThread.channel_id == f"D{user_id}")
                    .order_by(SlackThread.id.desc())
                    .limit(1)
                )

        return await eventually(recorded)

    async def conversation(self) -> Conversation:
        async with self.runtime.sessions() as session:
            found = await session.scalar(select(Conversation).order_by(Conversation.created_at))
        assert found is not None
        return found


def _website(app_url: str, sandbox_url: str, public_key: str) -> Starlette:
    page = demo_page(
        widget_src=f"{app_url}/widget.js", public_key=public_key, sandbox_url=sandbox_url
    )
    return Starlette(routes=[Route("/", lambda _: HTMLResponse(page))])


# One Chromium for a test module (starting it is most of a test's time); each test gets its own
# browser context (cookies, storage) and its own app, Slack and database. The module's tests run in
# the module's event loop: `pytestmark = pytest.mark.asyncio(loop_scope="module")`.
@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await launch(playwright)
        yield browser
        await browser.close()


@pytest.fixture
def viewport() -> Mapping[str, int]:
    return {"width": 1100, "height": 760}


@pytest_asyncio.fixture(loop_scope="module")
async def site(
    browser: Browser, tmp_path: Path, viewport: Mapping[str, int]
) -> AsyncIterator[Site]:
    slack = FakeSlack(team_name="Demo Co")
    for user_id, name in ((ALICE, "Alice"), (BOB, "Bob"), (CAROL, "Carol")):
        slack.add_user(user_id, name.lower(), real_name=f"{name} Rep", display_name=name)
    async with serve(slack.asgi) as slack_url:
        settings = Settings(
            slack_bot_token=slack.bot_token,
            slack_signing_secret=SIGNING_SECRET,
            slack_api_url=f"{slack_url}/api/",
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'slackrouter.db'}",
            mbox_path=str(tmp_path / "mail.mbox"),
            presence_refresh_interval=3600,
            delivery_poll_interval=0.5,
        )
        runtime = build(settings)
        await runtime.migrate()
        chatflow = await create_chatflow(
            runtime.sessions,
            team_id=slack.team_id,
            spec=ChatflowSpec(name="Website", route_users=(ALICE, BOB)),
            clock=utcnow,
        )
        sandbox_url = f"{slack_url}/sandbox/"
        async with serve(create_api(runtime)) as app_url:
            slack.configure_events(f"{app_url}/slack/events", SIGNING_SECRET)
            website = _website(app_url, sandbox_url, chatflow.public_key)
            async with serve(website) as website_url:
                context = await browser.new_context(viewport=dict(viewport))
                await keep_local(context)
                context.set_default_timeout(WAIT_MS)
                site = Site(
                    app_url=app_url,
                    website_url=f"{website_url}/",
                    sandbox_url=sandbox_url,
                    slack=slack,
                    runtime=runtime,
                    chatflow=chatflow,
                    context=context,
                )
                await site.presence(**{ALICE: "active", BOB: "active", CAROL: "away"})
                try:
                    yield site
                finally:
                    await context.close()
