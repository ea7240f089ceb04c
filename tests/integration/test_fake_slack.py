"""The fake Slack, driven only through the real slack_sdk client over real HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator
from slack_sdk.web.async_client import AsyncWebClient

from slackrouter.sandbox.fake_slack import FakeSlack
from slackrouter.sandbox.server import serve


@dataclass
class Slack:
    fake: FakeSlack
    client: AsyncWebClient
    url: str

    def client_with(self, token: str | None, timeout: float = 30) -> AsyncWebClient:
        return AsyncWebClient(token=token, base_url=f"{self.url}/api/", timeout=timeout)


@pytest.fixture
async def slack() -> AsyncIterator[Slack]:
    fake = FakeSlack()
    fake.add_user("U1", "alice", real_name="Alice Archer", email="alice@example.com")
    fake.add_user("U2", "bob", real_name="Bob Baker", email="Bob@Example.com", presence="away")
    fake.add_user("U3", "carol", deleted=True)
    fake.add_channel("C1", "sales")
    fake.add_channel("C2", "elsewhere", bot_member=False)
    fake.add_channel("C3", "secret", is_private=True, bot_member=False)
    async with serve(fake.asgi) as url:
        yield Slack(fake, AsyncWebClient(token="xoxb-fake", base_url=f"{url}/api/"), url)


async def test_serve_binds_a_free_port_and_releases_it() -> None:
    fake = FakeSlack()
    async with serve(fake.asgi) as url:
        host, port = url.removeprefix("http://").split(":")
        assert host == "127.0.0.1" and int(port) > 0
        _, writer = await asyncio.open_connection(host, int(port))
        writer.close()
        await writer.wait_closed()
    with pytest.raises(OSError):
        await asyncio.open_connection(host, int(port))


async def test_auth_test_identifies_the_bot(slack: Slack) -> None:
    response = await slack.client.auth_test()

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response["user_id"] == "UBOT"
    assert response["bot_id"] == "BBOT"
    assert response["team_id"] == "T0001"
    assert response["url"] == "https://acme.slack.com/"


async def test_missing_and_unknown_tokens_are_refused(slack: Slack) -> None:
    with pytest.raises(SlackApiError) as missing:
        await slack.client_with(None).auth_test()
    with pytest.raises(SlackApiError) as unknown:
        await slack.client_with("xoxb-nope").auth_test()

    assert missing.value.response.status_code == 200
    assert missing.value.response["error"] == "not_authed"
    assert unknown.value.response["error"] == "invalid_auth"


async def test_unknown_method(slack: Slack) -> None:
    with pytest.raises(SlackApiError) as error:
        await slack.client.api_call("chat.teleport")

    assert error.value.response["error"] == "unknown_method"


async def test_post_thread_history_and_replies(slack: Slack) -> None:
    dm = (await slack.client.conversations_open(users="U1"))["channel"]["id"]
    parent = await slack.client.chat_postMessage(channel=dm, text="New chat from the website")
    reply = await slack.client.chat_postMessage(
        channel=dm, thread_ts=parent["ts"], text="Visitor: hello"
    )
    other = await slack.client.chat_postMessage(channel=dm, text="Another chat")

    assert dm == "DU1"
    assert (await slack.client.conversations_open(users="U1"))["channel"]["id"] == dm
    assert parent["channel"] == dm and parent["message"]["bot_id"] == "BBOT"
    assert reply["message"]["thread_ts"] == parent["ts"]
    assert float(parent["ts"]) < float(reply["ts"]) < float(other["ts"])

    history = await slack.client.conversations_history(channel=dm)
    assert [m["text"] for m in history["messages"]] == ["Another chat", "New chat from the website"]
    thread_parent = history["messages"][1]
    assert thread_parent["reply_count"] == 1 and thread_parent["latest_reply"] == reply["ts"]

    replies = await slack.client.conversations_replies(channel=dm, ts=parent["ts"])
    assert [m["text"] for m in replies["messages"]] == [
        "New chat from the website",
        "Visitor: hello",
    ]
    assert replies["messages"][1]["parent_user_id"] == "UBOT"


async def test_history_pages_with_a_cursor(slack: Slack) -> None:
    for n in range(5):
        await slack.client.chat_postMessage(channel="C1", text=f"m{n}")

    texts, cursor = [], None
    while True:
        page = await slack.client.conversations_history(channel="C1", limit=2, cursor=cursor)
        texts += [m["text"] for m in page["messages"]]
        cursor = page["response_metadata"]["next_cursor"]
        if not cursor:
            break

    assert texts == ["m4", "m3", "m2", "m1", "m0"]


async def test_form_encoded_blocks_are_read_like_json_ones(slack: Slack) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]
    response = await slack.client.api_call(
        "chat.postMessage", data={"channel": "C1", "text": "hi", "blocks": json.dumps(blocks)}
    )

    stored = slack.fake.messages_in("C1")[0]
    assert stored["blocks"][0]["text"] == {"type": "mrkdwn", "text": "*hi*"}
    assert stored["blocks"][0]["block_id"]
    assert slack.fake.calls_to("chat.postMessage")[0].params["blocks"] == blocks
    assert response["message"]["blocks"] == stored["blocks"]


async def test_posting_needs_a_channel_the_app_is_in_and_some_text(slack: Slack) -> None:
    async def error_of(**kwargs: Any) -> str:
        with pytest.raises(SlackApiError) as error:
            await slack.client.chat_postMessage(**kwargs)
        return str(error.value.response["error"])

    assert await error_of(channel="C404", text="x") == "channel_not_found"
    assert await error_of(channel="C2", text="x") == "not_in_channel"
    assert await error_of(channel="C3", text="x") == "channel_not_found"
    with pytest.raises(SlackApiError) as no_text:
        await slack.client.api_call("chat.postMessage", json={"channel": "C1"})
    assert no_text.value.response["error"] == "no_text"
    assert await error_of(channel="C1", text="x" * 40_001) == "msg_too_long"
    by_name = await slack.client.chat_postMessage(channel="#sales", text="x")
    by_user = await slack.client.chat_postMessage(channel="U2", text="x")
    assert (by_name["channel"], by_user["channel"]) == ("C1", "DU2")


async def test_update_delete_and_permalink(slack: Slack) -> None:
    posted = await slack.client.chat_postMessage(channel="C1", text="Claim me")
    reply = await slack.client.chat_postMessage(channel="C1", thread_ts=posted["ts"], text="r")

    updated = await slack.client.chat_update(channel="C1", ts=posted["ts"], text="Claimed")
    link = await slack.client.chat_getPermalink(channel="C1", message_ts=reply["ts"])
    with pytest.raises(SlackApiError) as missing:
        await slack.client.chat_update(channel="C1", ts="1.000001", text="x")
    await slack.client.chat_delete(channel="C1", ts=reply["ts"])

    assert updated["text"] == "Claimed" and updated["message"]["edited"]["user"] == "UBOT"
    assert missing.value.response["error"] == "message_not_found"
    assert link["permalink"] == (
        f"https://acme.slack.com/archives/C1/p{reply['ts'].replace('.', '')}"
        f"?thread_ts={posted['ts']}&cid=C1"
    )
    [message] = slack.fake.messages_in("C1")
    assert message["text"] == "Claimed" and "reply_count" not in message


async def test_conversation_info_is_visible_for_public_channels_only(slack: Slack) -> None:
    public = await slack.client.conversations_info(channel="C2")
    with pytest.raises(SlackApiError) as private:
        await slack.client.conversations_info(channel="C3")
    with pytest.raises(SlackApiError) as history:
        await slack.client.conversations_history(channel="C2")

    assert (public["channel"]["name"], public["channel"]["is_member"]) == ("elsewhere", False)
    assert private.value.response["error"] == "channel_not_found"
    assert history.value.response["error"] == "not_in_channel"


async def test_ephemeral_messages_stay_out_of_history(slack: Slack) -> None:
    response = await slack.client.chat_postEphemeral(channel="C1", user="U1", text="Only you")

    assert response["message_ts"]
    assert slack.fake.ephemeral[0]["text"] == "Only you"
    assert (await slack.client.conversations_history(channel="C1"))["messages"] == []


async def test_users_info_list_and_lookup(slack: Slack) -> None:
    alice = await slack.client.users_info(user="U1")
    bob = await slack.client.users_lookupByEmail(email="bob@example.com")
    with pytest.raises(SlackApiError) as no_user:
        await slack.client.users_info(user="U404")
    with pytest.raises(SlackApiError) as no_email:
        await slack.client.users_lookupByEmail(email="nobody@example.com")

    assert alice["user"]["profile"]["email"] == "alice@example.com"
    assert alice["user"]["profile"]["real_name"] == "Alice Archer"
    assert bob["user"]["id"] == "U2"
    assert no_user.value.response["error"] == "user_not_found"
    assert no_email.value.response["error"] == "users_not_found"

    ids, cursor = [], None
    while True:
        page = await slack.client.users_list(limit=2, cursor=cursor)
        ids += [m["id"] for m in page["members"]]
        cursor = page["response_metadata"]["next_cursor"]
        if not cursor:
            break
    assert ids == ["USLACKBOT", "UBOT", "U1", "U2", "U3"]


async def test_presence_of_others_is_only_active_or_away(slack: Slack) -> None:
    assert dict((await slack.client.users_getPresence(user="U1")).data) == {
        "ok": True,
        "presence": "active",
    }
    slack.fake.set_presence("U1", "away")
    assert (await slack.client.users_getPresence(user="U1"))["presence"] == "away"
    assert (await slack.client.users_getPresence(user="U3"))["presence"] == "away"

    own = await slack.client.users_getPresence(user="UBOT")
    assert own["presence"] == "active" and own["online"] is True and "manual_away" in own


async def test_dnd_team_info(slack: Slack) -> None:
    slack.fake.set_dnd("U2", True)
    now = time.time()

    users = (await slack.client.dnd_teamInfo(users=["U1", "U2"]))["users"]

    assert users["U1"] == {"dnd_enabled": False, "next_dnd_start_ts": 1, "next_dnd_end_ts": 1}
    assert users["U2"]["dnd_enabled"] is True
    assert users["U2"]["next_dnd_start_ts"] <= now < users["U2"]["next_dnd_end_ts"]
    with pytest.raises(SlackApiError) as too_many:
        await slack.client.dnd_teamInfo(users=[f"U{n}" for n in range(51)])
    assert too_many.value.response["error"] == "invalid_arguments"


async def test_usergroups_need_a_paid_plan(slack: Slack) -> None:
    slack.fake.add_usergroup("S1", "sales-team", "Sales", users=["U1", "U2"])

    groups = await slack.client.usergroups_list(include_users=True)
    members = await slack.client.usergroups_users_list(usergroup="S1")
    with pytest.raises(SlackApiError) as unknown:
        await slack.client.usergroups_users_list(usergroup="S404")
    slack.fake.paid_plan = False
    with pytest.raises(SlackApiError) as free:
        await slack.client.usergroups_list()

    assert [(g["id"], g["handle"], g["users"]) for g in groups["usergroups"]] == [
        ("S1", "sales-team", ["U1", "U2"])
    ]
    assert members["users"] == ["U1", "U2"]
    assert unknown.value.response["error"] == "no_such_subteam"
    assert free.value.response["error"] == "plan_upgrade_required"


async def test_views_open_update_publish(slack: Slack) -> None:
    modal = {
        "type": "modal",
        "callback_id": "edit_chatflow",
        "title": {"type": "plain_text", "text": "Edit chatflow"},
        "submit": {"type": "plain_text", "text": "Save"},
        "blocks": [
            {
                "type": "input",
                "block_id": "name",
                "label": {"type": "plain_text", "text": "Name"},
                "element": {"type": "plain_text_input", "action_id": "value"},
            }
        ],
    }
    opened = await slack.client.views_open(trigger_id="1.2.abc", view=modal)
    updated = await slack.client.views_update(
        view_id=opened["view"]["id"], hash=opened["view"]["hash"], view=modal
    )
    home = await slack.client.views_publish(user_id="U1", view={"type": "home", "blocks": []})

    assert opened["view"]["callback_id"] == "edit_chatflow"
    assert slack.fake.views[opened["view"]["id"]]["title"]["text"] == "Edit chatflow"
    assert updated["view"]["id"] == opened["view"]["id"]
    assert home["view"]["type"] == "home" and slack.fake.home_views["U1"]["type"] == "home"

    async def error_of(call: Awaitable[Any]) -> SlackApiError:
        with pytest.raises(SlackApiError) as error:
            await call
        return error.value

    reused = await error_of(slack.client.views_open(trigger_id="1.2.abc", view=modal))
    stale = await error_of(
        slack.client.views_update(view_id=opened["view"]["id"], hash="stale", view=modal)
    )
    long_title = {**modal, "title": {"type": "plain_text", "text": "x" * 25}}
    invalid = await error_of(slack.client.views_open(trigger_id="1.2.def", view=long_title))
    assert reused.response["error"] == "exchanged_trigger_id"
    assert stale.response["error"] == "hash_conflict"
    assert invalid.response["error"] == "invalid_arguments"
    assert "title/text" in invalid.response["response_metadata"]["messages"][0]


async def test_team_info(slack: Slack) -> None:
    team = (await slack.client.team_info())["team"]

    assert (team["id"], team["name"], team["domain"]) == ("T0001", "Acme", "acme")


@pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning")  # in slack_sdk
async def test_oauth_exchanges_a_code_once_for_a_working_token(slack: Slack) -> None:
    code = slack.fake.issue_oauth_code("U1")
    anonymous = slack.client_with(None)

    install = await anonymous.oauth_v2_access(
        client_id="1111.2222", client_secret="fake-client-secret", code=code
    )
    with pytest.raises(SlackApiError) as reused:
        await anonymous.oauth_v2_access(
            client_id="1111.2222", client_secret="fake-client-secret", code=code
        )
    with pytest.raises(SlackApiError) as bad_secret:
        await anonymous.oauth_v2_access(
            client_id="1111.2222", client_secret="nope", code=slack.fake.issue_oauth_code("U1")
        )

    assert install["token_type"] == "bot" and install["bot_user_id"] == "UBOT"
    assert install["team"] == {"id": "T0001", "name": "Acme"}
    assert install["authed_user"]["id"] == "U1" and install["app_id"] == "A0001"
    assert "chat:write" in install["scope"].split(",")
    assert (await slack.client_with(install["access_token"]).auth_test())["user_id"] == "UBOT"
    assert reused.value.response["error"] == "invalid_code"
    assert bad_secret.value.response["error"] == "bad_client_secret"


async def test_calls_are_recorded(slack: Slack) -> None:
    await slack.client.chat_postMessage(channel="C1", text="hi", unfurl_links=False)
    with pytest.raises(SlackApiError):
        await slack.client.chat_postMessage(channel="C404", text="hi")

    ok, failed = slack.fake.calls_to("chat.postMessage")
    assert ok.params == {"channel": "C1", "text": "hi", "unfurl_links": False}
    assert (ok.status, ok.response["ok"]) == (200, True)
    assert failed.response == {"ok": False, "error": "channel_not_found"}


async def test_429_is_honoured_by_the_rate_limit_retry_handler(slack: Slack) -> None:
    slack.fake.fail("chat.postMessage", retry_after=0)
    slack.client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=1))

    response = await slack.client.chat_postMessage(channel="C1", text="once")

    assert response["ok"] is True
    limited, posted = slack.fake.calls_to("chat.postMessage")
    assert (limited.status, limited.response) == (429, {"ok": False, "error": "ratelimited"})
    assert posted.status == 200
    assert [m["text"] for m in slack.fake.messages_in("C1")] == ["once"]


async def test_429_carries_retry_after(slack: Slack) -> None:
    slack.fake.fail("users.info", retry_after=7, times=2)

    for _ in range(2):
        with pytest.raises(SlackApiError) as error:
            await slack.client.users_info(user="U1")
        assert error.value.response.status_code == 429
        assert error.value.response.headers["Retry-After"] == "7"
    assert (await slack.client.users_info(user="U1"))["user"]["id"] == "U1"


async def test_500_then_recovery_with_the_server_error_retry_handler(slack: Slack) -> None:
    slack.fake.fail("conversations.open", status=500, times=2)

    with pytest.raises(SlackApiError) as error:
        await slack.client.conversations_open(users="U1")
    slack.client.retry_handlers.append(
        AsyncServerErrorRetryHandler(1, FixedValueRetryIntervalCalculator(0.01))
    )
    response = await slack.client.conversations_open(users="U1")

    assert error.value.response.status_code == 500
    assert error.value.response["error"] == "internal_error"
    assert response["channel"]["id"] == "DU1"
    assert [c.status for c in slack.fake.calls_to("conversations.open")] == [500, 500, 200]


async def test_plain_error_injection_answers_200(slack: Slack) -> None:
    slack.fake.fail("users.getPresence", error="fatal_error")

    with pytest.raises(SlackApiError) as error:
        await slack.client.users_getPresence(user="U1")

    assert error.value.response.status_code == 200
    assert error.value.response["error"] == "fatal_error"


async def test_a_stalled_call_times_out_the_client_and_then_recovers(slack: Slack) -> None:
    slack.fake.stall("users.getPresence", 30)
    impatient = slack.client_with("xoxb-fake", timeout=0.2)
    started = time.monotonic()

    with pytest.raises((asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        await impatient.users_getPresence(user="U1")
    assert (await impatient.users_getPresence(user="U1"))["presence"] == "active"
    assert time.monotonic() - started < 2


async def test_per_channel_rate_limit(slack: Slack) -> None:
    slack.fake.rate_limit_per_channel(per_second=1.0, burst=2)

    for n in range(2):
        await slack.client.chat_postMessage(channel="C1", text=f"burst {n}")
    with pytest.raises(SlackApiError) as error:
        await slack.client.chat_postMessage(channel="C1", text="too fast")
    other_channel = await slack.client.chat_postMessage(channel="U1", text="fine")
    slack.fake.rate_limit_per_channel(None)
    after = await slack.client.chat_postMessage(channel="C1", text="limit off")

    assert error.value.response.status_code == 429
    assert error.value.response.headers["Retry-After"] == "1"
    assert other_channel["ok"] and after["ok"]
    assert [m["text"] for m in slack.fake.messages_in("C1")] == ["burst 0", "burst 1", "limit off"]
