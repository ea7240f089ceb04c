"""Signed but malformed Slack requests: bodies that are not JSON or not a form, and events,
slash commands and button clicks with a field missing or of the wrong type. Each is correctly
signed, so it passes the signature check and reaches the parsing. None may get a 5xx, and none
may change anything in the database.

The valid request each malformed one is made from does change something (a rep's reply stored,
a rep away, a chat claimed): `test_the_well_formed_requests_do_change_things` shows it, so the
fuzz cases aim at code that acts.

Hypothesis draws the cases up front (no shrinking: a case that changed the database cannot be
replayed on the same database); each is then sent, and every failing case is reported."""

from __future__ import annotations

import copy
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from slackrouter.adapters.db.models import Base, Conversation, Message, Rep, SlackThread
from slackrouter.api.app import create_api
from slackrouter.bootstrap import Runtime, build
from slackrouter.clock import utcnow
from slackrouter.config import Settings
from slackrouter.sandbox.fake_slack import FakeSlack
from slackrouter.sandbox.server import serve
from slackrouter.sandbox.slack_requests import (
    VERIFICATION_TOKEN,
    SlackRequestSender,
    block_actions_payload,
    message_event,
    new_trigger_id,
)
from slackrouter.services.chatflows import ChatflowSpec, create_chatflow
from tests.resilience.harness import eventually

SIGNING_SECRET = "fuzz-signing-secret-0123456789abcdef"
ALICE = "U0ALICE"
CASES = 30  # per kind of request
MISSING = object()
JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"

Path_ = tuple[str | int, ...]


@dataclass
class Workspace:
    """The app, serving one chat: the visitor's first message is posted in Alice's DM."""

    runtime: Runtime
    slack: FakeSlack
    sender: SlackRequestSender
    channel: str
    parent: dict[str, Any]
    conversation_id: str
    _ts: itertools.count[int]

    def fresh_ts(self) -> str:
        """A message ts no other case used, so that no case is a retry of another."""
        return f"{int(time.time())}.{next(self._ts):06d}"

    def reply_event(self) -> dict[str, Any]:
        """The envelope of Alice's reply in the chat's thread."""
        event = message_event(
            ALICE, self.channel, "We ship to Norway", self.fresh_ts(), self.parent["ts"]
        )
        return self.sender.envelope_for(event)

    def command(self) -> dict[str, Any]:
        """`/chatrouting away` from Alice, as Slack form-encodes it."""
        return {
            "token": VERIFICATION_TOKEN,
            "team_id": self.slack.team_id,
            "team_domain": "acme",
            "channel_id": self.channel,
            "channel_name": "directmessage",
            "user_id": ALICE,
            "user_name": "alice",
            "command": "/chatrouting",
            "text": "away",
            "api_app_id": self.slack.app_id,
            "is_enterprise_install": "false",
            "response_url": f"https://hooks.slack.com/commands/{self.slack.team_id}/1/x",
            "trigger_id": new_trigger_id(),
        }

    def claim(self) -> dict[str, Any]:
        """Alice clicks Claim on the chat's first message."""
        return block_actions_payload(
            user_id=ALICE,
            action_id="chat_claim",
            value=self.conversation_id,
            message=self.parent,
            channel_id=self.channel,
        )

    async def send(self, body: bytes, content_type: str) -> httpx.Response:
        headers = {"Content-Type": content_type, **self.sender.signed_headers(body)}
        return await self.sender.send_raw(body, headers)

    async def snapshot(self) -> dict[str, list[str]]:
        """Every row of every table, as text."""
        async with self.runtime.sessions() as session:
            return {
                table.name: sorted(repr(tuple(row)) for row in await session.execute(select(table)))
                for table in Base.metadata.sorted_tables
            }


@pytest.fixture
async def workspace(tmp_path: Path) -> AsyncIterator[Workspace]:
    slack = FakeSlack()
    slack.add_user(ALICE, "alice", real_name="Alice Rep", display_name="Alice")
    async with serve(slack.asgi) as slack_url:
        runtime = build(
            Settings(
                slack_bot_token=slack.bot_token,
                slack_signing_secret=SIGNING_SECRET,
                slack_api_url=f"{slack_url}/api/",
                database_url=f"sqlite+aiosqlite:///{tmp_path / 'slackrouter.db'}",
                mbox_path=str(tmp_path / "mail.mbox"),
                presence_refresh_interval=3600,
                delivery_poll_interval=0.2,
            )
        )
        await runtime.migrate()
        chatflow = await create_chatflow(
            runtime.sessions,
            team_id=slack.team_id,
            spec=ChatflowSpec(name="Sales", route_users=(ALICE,)),
            clock=utcnow,
        )
        async with serve(create_api(runtime)) as url, httpx.AsyncClient(timeout=30) as http:
            slack.configure_events(f"{url}/slack/events", SIGNING_SECRET)
            await runtime.presence.refresh(pace=False)
            accepted = await http.post(
                f"{url}/v1/chatflows/{chatflow.public_key}/messages",
                json={"visitor_id": "v1", "client_message_id": "m1", "text": "Hi"},
            )
            assert accepted.status_code == 201, accepted.text
            channel = f"D{ALICE}"

            async def parent() -> dict[str, Any] | None:
                async with runtime.sessions() as session:
                    thread = await session.scalar(select(SlackThread))
                if thread is None or thread.thread_ts is None:
                    return None
                return next(m for m in slack.messages_in(channel) if m["ts"] == thread.thread_ts)

            message = await eventually(parent, within=30, what="the chat is posted to Alice")
            yield Workspace(
                runtime,
                slack,
                SlackRequestSender(f"{url}/slack/events", SIGNING_SECRET, client=http),
                channel,
                message,
                accepted.json()["conversation_id"],
                itertools.count(1),
            )


# --- malformed variants -----------------------------------------------------------------------


def wrong_type(right: type) -> st.SearchStrategy[Any]:
    """A JSON value of any type but `right`."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=12),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=6), st.integers(), max_size=3),
    ).filter(lambda value: not isinstance(value, right))


# The fields the app reads to act on each request, their types in Slack's payloads, and
# whether Slack always sends them (a field that may be absent is only given a wrong type).
EVENT_FIELDS: dict[Path_, tuple[type, bool]] = {
    ("type",): (str, True),
    ("event",): (dict, True),
    ("event", "type"): (str, True),
    ("event", "user"): (str, True),
    ("event", "text"): (str, False),
    ("event", "ts"): (str, True),
    ("event", "thread_ts"): (str, True),
    ("event", "channel"): (str, True),
}
COMMAND_FIELDS: tuple[str, ...] = ("team_id", "user_id", "command", "text")
# The workspace of a click is also in `user.team_id`: `team` is not among these.
CLAIM_FIELDS: dict[Path_, tuple[type, bool]] = {
    ("type",): (str, True),
    ("user",): (dict, True),
    ("user", "id"): (str, True),
    ("actions",): (list, True),
    ("actions", 0): (dict, True),
    ("actions", 0, "action_id"): (str, True),
    ("container",): (dict, True),
    ("container", "channel_id"): (str, True),
    ("container", "message_ts"): (str, True),
}


@dataclass(frozen=True)
class Mutation:
    """One field of a well-formed payload, removed (`value` is MISSING) or replaced."""

    path: Path_
    value: Any

    def applied(self, payload: dict[str, Any]) -> dict[str, Any]:
        changed = copy.deepcopy(payload)
        *parents, last = self.path
        node: Any = changed
        for key in parents:
            node = node[key]
        if self.value is MISSING:
            del node[last]
        else:
            node[last] = self.value
        return changed

    def __str__(self) -> str:
        where = ".".join(str(key) for key in self.path)
        return f"{where} removed" if self.value is MISSING else f"{where} = {self.value!r}"


def mutations(fields: dict[Path_, tuple[type, bool]]) -> st.SearchStrategy[Mutation]:
    return st.one_of(
        *(
            st.builds(
                Mutation,
                st.just(path),
                st.one_of(st.just(MISSING), wrong_type(right)) if always else wrong_type(right),
            )
            for path, (right, always) in fields.items()
        )
    )


def not_json() -> st.SearchStrategy[bytes]:
    """Bytes that are not a JSON object: broken JSON, other JSON values, random bytes."""
    return st.one_of(
        st.binary(max_size=64),
        st.text(max_size=64).map(str.encode),
        st.sampled_from([b"{", b'{"type": ', b"[]", b"null", b"42", b'"event_callback"']),
        st.recursive(st.none() | st.integers() | st.text(max_size=8), st.lists, max_leaves=5)
        .filter(lambda value: not isinstance(value, dict))
        .map(lambda value: json.dumps(value).encode()),
    ).filter(lambda raw: not _is_json_object(raw))


def _is_json_object(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw), dict)
    except ValueError:
        return False


def draw(strategy: st.SearchStrategy[Any], count: int = CASES) -> list[Any]:
    """Up to `count` distinct values of `strategy`, the same on every run (no shrinking, no
    database of examples)."""
    drawn: dict[str, Any] = {}

    @given(strategy)
    @settings(
        max_examples=count,
        phases=[Phase.generate],
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def collect(value: Any) -> None:
        drawn.setdefault(repr(value), value)

    collect()
    return list(drawn.values())


# --- the requests -----------------------------------------------------------------------------

Build = Callable[[Workspace, Any], tuple[bytes, str]]


def event_body(workspace: Workspace, mutation: Mutation) -> tuple[bytes, str]:
    return json.dumps(mutation.applied(workspace.reply_event())).encode(), JSON_TYPE


def command_body(workspace: Workspace, field: str) -> tuple[bytes, str]:
    form = workspace.command()
    del form[field]
    return urlencode(form).encode(), FORM_TYPE


def claim_body(workspace: Workspace, mutation: Mutation) -> tuple[bytes, str]:
    payload = json.dumps(mutation.applied(workspace.claim()))
    return urlencode({"payload": payload}).encode(), FORM_TYPE


def raw_event(workspace: Workspace, raw: bytes) -> tuple[bytes, str]:
    return raw, JSON_TYPE


def raw_form(workspace: Workspace, raw: bytes) -> tuple[bytes, str]:
    return raw, FORM_TYPE


def raw_payload(workspace: Workspace, raw: bytes) -> tuple[bytes, str]:
    return urlencode({"payload": raw.decode(errors="replace")}).encode(), FORM_TYPE


KINDS: dict[str, tuple[Build, Callable[[], st.SearchStrategy[Any]]]] = {
    "event with a field missing or mistyped": (event_body, lambda: mutations(EVENT_FIELDS)),
    "slash command with a field missing": (command_body, lambda: st.sampled_from(COMMAND_FIELDS)),
    "Claim click with a field missing or mistyped": (claim_body, lambda: mutations(CLAIM_FIELDS)),
    "event body that is not a JSON object": (raw_event, not_json),
    "form body that is not a form": (raw_form, not_json),
    "interaction payload that is not a JSON object": (raw_payload, not_json),
}


@pytest.mark.parametrize("kind", list(KINDS))
async def test_malformed_signed_requests_get_no_5xx_and_change_nothing(
    workspace: Workspace, kind: str
) -> None:
    build, strategy = KINDS[kind]
    cases = draw(strategy())
    failures: dict[str, list[str]] = {}  # what went wrong: the cases it went wrong for
    before = await workspace.snapshot()
    for case in cases:
        body, content_type = build(workspace, case)
        response = await workspace.send(body, content_type)
        after = await workspace.snapshot()
        changed = [name for name, rows in after.items() if rows != before[name]]
        before = after
        problems = [f"HTTP {response.status_code}"] if response.status_code >= 500 else []
        problems += [f"stored in {', '.join(changed)}"] if changed else []
        if problems:
            failures.setdefault(" and ".join(problems), []).append(str(case)[:80])
    failing = sum(len(found) for found in failures.values())
    print(f"\n{kind}: {len(cases)} cases, {failing} failing")
    assert not failures, f"{failing} of {len(cases)} cases failed:\n" + "\n".join(
        f"- {problem} ({len(found)}): {'; '.join(found[:6])}" for problem, found in failures.items()
    )


async def test_the_well_formed_requests_do_change_things(workspace: Workspace) -> None:
    for body, content_type in (
        (urlencode({"payload": json.dumps(workspace.claim())}).encode(), FORM_TYPE),
        (urlencode(workspace.command()).encode(), FORM_TYPE),
        (json.dumps(workspace.reply_event()).encode(), JSON_TYPE),
    ):
        response = await workspace.send(body, content_type)
        assert response.status_code == 200, response.text
    async with workspace.runtime.sessions() as session:
        reply = await session.scalar(select(Message).where(Message.author == "rep"))
        rep = await session.get_one(Rep, (workspace.slack.team_id, ALICE))
        conversation = await session.get_one(Conversation, workspace.conversation_id)
    assert reply is not None and reply.text == "We ship to Norway"
    assert not rep.opted_in
    assert conversation.assignee == ALICE
