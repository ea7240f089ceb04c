"""`pings_in`: what Slack would render as a mention or special link in a message payload."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from slack_sdk.web.async_client import AsyncWebClient

from slackrouter.sandbox.fake_slack import FakeSlack, pings_in
from slackrouter.sandbox.server import serve

SPECIALS = [
    "<!channel>",
    "<!here>",
    "<!everyone>",
    "<!subteam^S1|@sales>",
    "<@U1>",
    "<#C1|general>",
    "<https://evil.example|click me>",
    "<!date^1392734382^{date}|Feb 18>",
]
EVERY_SPECIAL = " and ".join(SPECIALS)


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def section(text: str, **extra: object) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text, **extra}}


def test_every_special_sequence_in_text_is_flagged_in_order() -> None:
    assert pings_in({"text": f"Visitor says: {EVERY_SPECIAL}"}) == SPECIALS


def test_sequences_count_whatever_mrkdwn_says() -> None:
    assert pings_in({"text": "<!here>", "mrkdwn": False}) == ["<!here>"]


def test_escaped_text_is_inert() -> None:
    assert pings_in({"text": escape(EVERY_SPECIAL)}) == []
    assert pings_in({"text": "&lt;!channel&gt; &amp;lt;@U1&amp;gt;"}) == []


def test_bare_names_only_with_link_names_or_full_parse() -> None:
    text = "@channel ask @bob or mail bob@example.com"

    assert pings_in({"text": text}) == []
    assert pings_in({"text": text, "link_names": True}) == ["@channel", "@bob"]
    assert pings_in({"text": text, "link_names": "1"}) == ["@channel", "@bob"]
    assert pings_in({"text": text, "parse": "full"}) == ["@channel", "@bob"]
    assert pings_in({"text": text, "link_names": "false"}) == []


def test_mrkdwn_blocks_are_scanned_anywhere_and_plain_text_is_inert() -> None:
    blocks = [
        section("Chat from <@U9>"),
        {"type": "section", "text": {"type": "plain_text", "text": "<!channel> @here"}},
        {
            "type": "section",
            "fields": [{"type": "mrkdwn", "text": "<!subteam^S1>"}],
            "accessory": {
                "type": "button",
                "text": {"type": "plain_text", "text": "<!here>"},
                "value": "<!here>",
                "action_id": "claim",
            },
        },
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "<#C1>"}]},
    ]

    assert pings_in({"text": "fallback", "blocks": blocks}) == ["<@U9>", "<!subteam^S1>", "<#C1>"]


def test_bare_broadcasts_in_mrkdwn_objects_unless_verbatim() -> None:
    assert pings_in({"blocks": [section("hey @here and @bob")]}) == ["@here"]
    assert pings_in({"blocks": [section("hey @here", verbatim=True)]}) == []
    assert pings_in({"blocks": [section("@bob", verbatim=True)], "link_names": True}) == ["@bob"]


def test_markdown_blocks_and_rich_text_elements() -> None:
    blocks = [
        {"type": "markdown", "text": "**hi** @everyone <!here>"},
        {
            "type": "rich_text",
            "elements": [
                {
                    "type": "rich_text_section",
                    "elements": [
                        {"type": "text", "text": "<!channel> is just text here"},
                        {"type": "user", "user_id": "U1"},
                        {"type": "broadcast", "range": "here"},
                        {"type": "usergroup", "usergroup_id": "S1"},
                        {"type": "link", "url": "https://x.example"},
                    ],
                }
            ],
        },
    ]

    assert pings_in({"blocks": blocks}) == [
        "@everyone",
        "<!here>",
        "<@U1>",
        "<!here>",
        "<!subteam^S1>",
        "<https://x.example>",
    ]


def test_attachments_and_form_encoded_json() -> None:
    params = {
        "text": "",
        "blocks": json.dumps([section("<!channel>")]),
        "attachments": json.dumps(
            [
                {
                    "pretext": "<@U1>",
                    "text": "&lt;!here&gt;",
                    "fields": [{"title": "Visitor", "value": "<!everyone>"}],
                    "blocks": [section("<#C2>")],
                }
            ]
        ),
    }

    assert pings_in(params) == ["<!channel>", "<@U1>", "<!everyone>", "<#C2>"]


@given(st.text())
def test_any_escaped_text_is_inert(text: str) -> None:
    safe = escape(text)
    blocks = [
        section(safe, verbatim=True),
        {"type": "section", "text": {"type": "plain_text", "text": text}},
        {"type": "rich_text", "elements": [{"type": "text", "text": text}]},
    ]

    assert pings_in({"text": safe, "blocks": blocks}) == []


@given(st.text(), st.sampled_from(["<!channel>", "<!here>", "<@U1>", "<!subteam^S1>"]))
def test_a_raw_sequence_is_always_found(text: str, special: str) -> None:
    assert special in pings_in({"text": escape(text) + special + escape(text)})


@pytest.fixture
async def client() -> AsyncIterator[tuple[FakeSlack, AsyncWebClient]]:
    fake = FakeSlack()
    fake.add_channel("C1", "sales")
    async with serve(fake.asgi) as url:
        yield fake, AsyncWebClient(token="xoxb-fake", base_url=f"{url}/api/")


async def test_checks_what_the_app_actually_sent(
    client: tuple[FakeSlack, AsyncWebClient],
) -> None:
    fake, slack = client
    visitor = "Hi <!channel>, call me @here"

    await slack.chat_postMessage(
        channel="C1",
        text=escape(visitor),
        blocks=[section(f"*Visitor:* {escape(visitor)}", verbatim=True)],
    )
    await slack.chat_postMessage(channel="C1", text=visitor, link_names=True)

    careful, careless = fake.calls_to("chat.postMessage")
    assert pings_in(careful.params) == []
    assert pings_in(careless.params) == ["<!channel>", "@here"]
