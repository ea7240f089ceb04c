"""Operating the app: /healthz and /readyz, Prometheus metrics at /metrics, and structured logs
that name the workspace and conversation but never a secret or what a visitor or rep wrote."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from slackrouter.api.app import create_api
from slackrouter.bootstrap import build
from slackrouter.config import Settings
from slackrouter.observability import configure_logging, remove_logging
from slackrouter.sandbox.server import serve
from tests.scenario.conftest import ALICE, BOB, SIGNING_SECRET, Chat, eventually


async def metrics(chat: Chat) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, by name and labels."""
    answer = await chat.http.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_health_and_readiness(chat: Chat) -> None:
    assert (await chat.http.get("/healthz")).json() == {"status": "ok"}
    ready = await chat.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "database": "ok"}


async def test_not_ready_while_migrations_are_pending(tmp_path: Path) -> None:
    settings = Settings(
        slack_bot_token="xoxb-fake",
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url="http://127.0.0.1:1/api/",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}",
        presence_refresh_interval=3600,
    )
    async with serve(create_api(build(settings))) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/healthz")).status_code == 200
        ready = await http.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
    assert "run `slackrouter migrate`" in ready.json()["database"]


async def test_metrics_count_chats_replies_deliveries_and_slack_calls(chat: Chat) -> None:
    before = await metrics(chat)
    accepted = (await chat.visitor_says("Hello there")).json()
    parent = await chat.parent_post(ALICE)
    await chat.slack.user_posts(ALICE, f"D{ALICE}", "Hi!", thread_ts=parent["ts"])

    async def relayed() -> bool:
        page = await chat.read(accepted["conversation_id"], accepted["conversation_token"])
        return any(m["author"] == "rep" for m in page.json()["messages"])

    await eventually(relayed)
    await chat.presence(**{ALICE: "away", BOB: "away"})
    assert (await chat.visitor_says("Anyone?", visitor_id="visitor-2")).json()["status"] == "away"
    # Slack fails the next post: a retry, and a post waits in the outbox (the queue).
    chat.slack.fail("chat.postMessage", status=500, times=1)
    await chat.presence(**{BOB: "active"})
    await chat.visitor_says("Still there?", visitor_id="visitor-3")
    await eventually(lambda: chat.slack.calls_to("chat.postMessage")[-1].status == 500)

    retries = ("slackrouter_delivery_retries_total", (("kind", "post_parent"),))

    async def after() -> dict:
        samples = await metrics(chat)
        return samples if samples.get(retries, 0) > before.get(retries, 0) else {}

    samples = await eventually(after)

    def delta(name: str, **labels: str) -> float:
        return value(samples, name, **labels) - value(before, name, **labels)

    assert delta("slackrouter_chats_received_total") == 3
    assert delta("slackrouter_chats_routed_total") == 2
    assert delta("slackrouter_chats_away_total") == 1
    assert delta("slackrouter_visitor_messages_total") == 3
    assert delta("slackrouter_replies_relayed_total") == 1
    assert delta("slackrouter_delivery_retries_total", kind="post_parent") == 1
    assert delta("slackrouter_slack_api_calls_total", method="chat.postMessage", outcome="ok") >= 2
    assert delta("slackrouter_slack_api_call_seconds_count", method="users.getPresence") >= 2
    assert value(samples, "slackrouter_outbox_pending", kind="post_parent") == 1
    assert ("slackrouter_chats_emailed_total", ()) in samples


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """The app's log lines at INFO, as `slackrouter run` writes them."""
    names = ("", "slack_sdk", "slack_bolt", "httpx", "apscheduler")
    levels = {name: logging.getLogger(name).level for name in names}
    stream = io.StringIO()
    configure_logging("INFO", stream)
    try:
        yield stream
    finally:
        remove_logging()
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


async def test_info_logs_carry_ids_but_no_secret_or_chat_text(
    chat: Chat, captured_logs: io.StringIO
) -> None:
    visitor_text = "My card number is 4111 1111 1111 1111"
    rep_text = "Thanks, the discount code is SPRING-42"
    accepted = (await chat.visitor_says(visitor_text, name="Nora")).json()
    parent = await chat.parent_post(ALICE)
    await chat.slack.user_posts(ALICE, f"D{ALICE}", rep_text, thread_ts=parent["ts"])

    async def relayed() -> bool:
        page = await chat.read(accepted["conversation_id"], accepted["conversation_token"])
        return any(m["author"] == "rep" for m in page.json()["messages"])

    await eventually(relayed)
    logs = captured_logs.getvalue()
    assert logs, "nothing was logged at INFO"
    for secret in (
        visitor_text,
        "4111",
        rep_text,
        "SPRING-42",
        chat.runtime.settings.slack_bot_token,
        SIGNING_SECRET,
        chat.signing_secret,
        accepted["conversation_token"],
    ):
        assert secret and secret not in logs, secret
    lines = logs.splitlines()
    assert all(re.match(r"time=\S+ level=(info|warning|error) logger=\S+ ", line) for line in lines)
    relayed_line = next(line for line in lines if "relayed reply" in line)
    assert f"team={chat.slack.team_id}" in relayed_line
    assert f"conversation={accepted['conversation_id']}" in relayed_line
