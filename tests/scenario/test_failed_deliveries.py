"""A delivery that failed for good shows on the admins' App Home, and Retry sends it again."""

from __future__ import annotations

from sqlalchemy import select

from slackrouter.adapters.db.models import OutboxItem
from slackrouter.services.admins import NOT_ADMIN
from tests.scenario.conftest import ALICE, BOB, eventually
from tests.scenario.slack_surfaces import (
    ADA,
    EVE,
    Workspace,
    text_of,
    workspace_fixture,  # noqa: F401
)


async def failed_items(workspace: Workspace) -> list[OutboxItem]:
    async with workspace.chat.runtime.sessions() as session:
        return list(await session.scalars(select(OutboxItem).where(OutboxItem.status == "failed")))


async def test_an_admin_sees_a_failed_post_and_retries_it(workspace: Workspace) -> None:
    chat = workspace.chat
    await chat.presence(**{BOB: "away"})
    # Slack refuses the post for good (the app was removed from the DM, say).
    chat.slack.fail("chat.postMessage", error="channel_not_found", status=200, times=1)
    accepted = await chat.visitor_says("Anyone there?")
    assert accepted.status_code == 201
    await eventually(lambda: failed_items(workspace))

    home = await workspace.open_home(ADA)
    assert "*Deliveries that failed* (1)" in text_of(home)
    assert "channel_not_found" in text_of(home)

    # Someone who is not an admin cannot retry it.
    await workspace.click_in_view(
        EVE, home, "delivery_retry", value=str((await failed_items(workspace))[0].id)
    )
    await eventually(lambda: workspace.views("notice"))
    assert NOT_ADMIN in text_of(workspace.view("notice"))
    assert len(await failed_items(workspace)) == 1

    await workspace.click_in_view(
        ADA, home, "delivery_retry", value=str((await failed_items(workspace))[0].id)
    )
    parent = await chat.parent_post(ALICE)
    assert parent["ok"]
    assert await failed_items(workspace) == []
    await eventually(lambda: "Deliveries that failed" not in text_of(workspace.home(ADA)))
