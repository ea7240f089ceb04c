"""Who is a slackrouter admin, asked of the fake Slack over HTTP: workspace admins and owners
(`users.info`), and the users of the SLACKROUTER_ADMINS setting."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from slackrouter.adapters.slack.gateway import SlackGateway, create_client
from slackrouter.sandbox.fake_slack import FakeSlack
from slackrouter.sandbox.server import serve
from slackrouter.services.admins import NOT_ADMIN, Admins, NotAllowed

TEAM = "T0001"


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeSlack, SlackGateway]]:
    slack = FakeSlack(team_id=TEAM)
    slack.add_user("U0ADMIN", "ada", is_admin=True)
    slack.add_user("U0OWNER", "olga", is_owner=True)
    slack.add_user("U0LISTED", "lisa")
    slack.add_user("U0REP", "rick")
    async with serve(slack.asgi) as url:
        yield slack, SlackGateway(create_client("xoxb-fake", f"{url}/api/"))


async def test_admins_owners_and_listed_users_are_admins(
    fake: tuple[FakeSlack, SlackGateway],
) -> None:
    slack, gateway = fake
    clock = [0.0]
    admins = Admins(gateway, listed={"U0LISTED"}, monotonic=lambda: clock[0])
    found = {u: await admins.is_admin(team_id=TEAM, user_id=u) for u in slack.users}
    assert {u for u, admin in found.items() if admin} == {"U0ADMIN", "U0OWNER", "U0LISTED"}
    with pytest.raises(NotAllowed, match="Only slackrouter admins"):
        await admins.require(team_id=TEAM, user_id="U0REP")
    assert str(NotAllowed(NOT_ADMIN)) == NOT_ADMIN

    # Slack's answer is kept for a minute: a demotion counts after that.
    calls = len(slack.calls_to("users.info"))
    slack.users["U0ADMIN"]["is_admin"] = False
    assert await admins.is_admin(team_id=TEAM, user_id="U0ADMIN")
    assert len(slack.calls_to("users.info")) == calls
    clock[0] = 61.0
    assert not await admins.is_admin(team_id=TEAM, user_id="U0ADMIN")


async def test_a_failing_lookup_counts_as_no(fake: tuple[FakeSlack, SlackGateway]) -> None:
    slack, gateway = fake
    slack.fail("users.info", "internal_error", status=200)
    assert not await Admins(gateway, listed=()).is_admin(team_id=TEAM, user_id="U0ADMIN")
    assert not await Admins(gateway, listed=()).is_admin(team_id=TEAM, user_id="U0NOBODY")
