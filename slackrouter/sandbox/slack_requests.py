"""Requests the way Slack sends them to an app: signed events, slash commands and interactions.

Everything goes over real HTTP with Slack's headers and signature, so the app under test runs its
real request verification. The payload builders return Slack's documented shapes.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import secrets
import ssl
import string
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import httpx

VERIFICATION_TOKEN = "fake-verification-token"
"""The legacy `token` field Slack still puts in payloads; apps must not rely on it."""

_ID_ALPHABET = string.ascii_uppercase + string.digits


def new_id(prefix: str, length: int = 9) -> str:
    """A random Slack-style id such as `V0A1B2C3D4`: a type prefix and uppercase letters/digits."""
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """Loading CA certificates takes tens of milliseconds; do it once, not per request."""
    return httpx.create_ssl_context()


def sign(signing_secret: str, timestamp: int | str, body: bytes) -> str:
    """The `X-Slack-Signature` value: `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}`."""
    base = b"v0:" + str(timestamp).encode() + b":" + body
    return "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()


def new_trigger_id() -> str:
    """A trigger id shaped like Slack's (`<digits>.<digits>.<hex>`)."""
    return f"{int(time.time() * 1000)}.{secrets.randbelow(10**9)}.{secrets.token_hex(16)}"


def rich_text_blocks(text: str) -> list[dict[str, Any]]:
    """The `blocks` Slack attaches to a message a person typed: one rich_text section of text."""
    return [
        {
            "type": "rich_text",
            "block_id": "".join(secrets.choice(string.ascii_letters) for _ in range(5)),
            "elements": [
                {"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}
            ],
        }
    ]


def message_event(
    user: str,
    channel: str,
    text: str,
    ts: str,
    thread_ts: str | None = None,
    channel_type: str = "im",
    *,
    team_id: str = "T0001",
    parent_user_id: str | None = None,
) -> dict[str, Any]:
    """A `message` event as Slack delivers it when a person posts (no subtype)."""
    event: dict[str, Any] = {
        "client_msg_id": str(uuid.uuid4()),
        "type": "message",
        "text": text,
        "user": user,
        "ts": ts,
        "blocks": rich_text_blocks(text),
        "team": team_id,
    }
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
        if parent_user_id is not None:
            event["parent_user_id"] = parent_user_id
    event.update({"channel": channel, "event_ts": ts, "channel_type": channel_type})
    return event


def _user(user_id: str, user_name: str | None, team_id: str) -> dict[str, Any]:
    name = user_name or user_id.lower()
    return {"id": user_id, "username": name, "name": name, "team_id": team_id}


def _team(team_id: str) -> dict[str, Any]:
    return {"id": team_id, "domain": team_id.lower()}


def block_actions_payload(
    *,
    user_id: str,
    action_id: str,
    value: str | None = None,
    block_id: str = "actions",
    action_type: str = "button",
    action: Mapping[str, Any] | None = None,
    message: Mapping[str, Any] | None = None,
    channel_id: str | None = None,
    view: Mapping[str, Any] | None = None,
    team_id: str = "T0001",
    api_app_id: str = "A0001",
    user_name: str | None = None,
    trigger_id: str | None = None,
    response_url: str | None = None,
) -> dict[str, Any]:
    """A `block_actions` payload: a click on an element of a message (give `message` and
    `channel_id`) or of a view (give `view`). `action` adds or overrides fields of the action,
    e.g. `{"selected_option": {...}}` for a select."""
    act: dict[str, Any] = {
        "action_id": action_id,
        "block_id": block_id,
        "type": action_type,
        "action_ts": f"{time.time():.6f}",
    }
    if action_type == "button":
        act["text"] = {"type": "plain_text", "text": action_id, "emoji": True}
    if value is not None:
        act["value"] = value
    act.update(action or {})
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": _user(user_id, user_name, team_id),
        "api_app_id": api_app_id,
        "token": VERIFICATION_TOKEN,
        "trigger_id": trigger_id or new_trigger_id(),
        "team": _team(team_id),
        "enterprise": None,
        "is_enterprise_install": False,
        "state": {"values": {}},
        "actions": [act],
    }
    if message is not None:
        if channel_id is None:
            raise ValueError("a click on a message needs the message's channel_id")
        payload["container"] = {
            "type": "message",
            "message_ts": message["ts"],
            "channel_id": channel_id,
            "is_ephemeral": False,
        }
        payload["channel"] = {"id": channel_id, "name": channel_id}
        payload["message"] = dict(message)
        payload["response_url"] = response_url or hook_url("actions", team_id)
    elif view is not None:
        payload["container"] = {"type": "view", "view_id": view.get("id", "")}
        payload["view"] = dict(view)
    else:
        raise ValueError("block_actions come from a message or a view")
    return payload


def view_submission_payload(
    *,
    user_id: str,
    view: Mapping[str, Any],
    values: Mapping[str, Mapping[str, Any]] | None = None,
    team_id: str = "T0001",
    api_app_id: str = "A0001",
    user_name: str | None = None,
    trigger_id: str | None = None,
) -> dict[str, Any]:
    """A `view_submission` payload for `view` (as opened, e.g. from `FakeSlack.views`), with
    the input state `values` = `{block_id: {action_id: {"type": ..., "value": ...}}}`."""
    view_id = view.get("id") or new_id("V")
    full_view: dict[str, Any] = {
        "id": view_id,
        "team_id": team_id,
        "type": "modal",
        "blocks": [],
        "private_metadata": "",
        "callback_id": "",
        "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
        "title": {"type": "plain_text", "text": "Modal"},
        "clear_on_close": False,
        "notify_on_close": False,
        "close": None,
        "submit": None,
        "previous_view_id": None,
        "root_view_id": view_id,
        "app_id": api_app_id,
        "external_id": "",
        "app_installed_team_id": team_id,
        "bot_id": "BBOT",
    }
    full_view.update(view)
    full_view["state"] = {"values": {k: dict(v) for k, v in (values or {}).items()}}
    return {
        "type": "view_submission",
        "team": _team(team_id),
        "user": _user(user_id, user_name, team_id),
        "api_app_id": api_app_id,
        "token": VERIFICATION_TOKEN,
        "trigger_id": trigger_id or new_trigger_id(),
        "view": full_view,
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


def message_shortcut_payload(
    *,
    user_id: str,
    callback_id: str,
    channel_id: str,
    message: Mapping[str, Any],
    team_id: str = "T0001",
    api_app_id: str = "A0001",
    user_name: str | None = None,
    trigger_id: str | None = None,
    response_url: str | None = None,
) -> dict[str, Any]:
    """A `message_action` payload: someone chose the app's message shortcut on `message`."""
    return {
        "type": "message_action",
        "token": VERIFICATION_TOKEN,
        "action_ts": f"{time.time():.6f}",
        "team": _team(team_id),
        "user": _user(user_id, user_name, team_id),
        "channel": {"id": channel_id, "name": channel_id},
        "is_enterprise_install": False,
        "enterprise": None,
        "api_app_id": api_app_id,
        "callback_id": callback_id,
        "trigger_id": trigger_id or new_trigger_id(),
        "message_ts": message["ts"],
        "message": dict(message),
        "response_url": response_url or hook_url("app", team_id),
    }


def block_suggestion_payload(
    *,
    user_id: str,
    action_id: str,
    value: str,
    view: Mapping[str, Any],
    block_id: str | None = None,
    team_id: str = "T0001",
    api_app_id: str = "A0001",
    user_name: str | None = None,
) -> dict[str, Any]:
    """A `block_suggestion` payload: someone typed `value` into an external select of `view`
    (as opened, e.g. from `FakeSlack.views`); the app answers with the options to show."""
    return {
        "type": "block_suggestion",
        "user": _user(user_id, user_name, team_id),
        "container": {"type": "view", "view_id": view.get("id", "")},
        "api_app_id": api_app_id,
        "token": VERIFICATION_TOKEN,
        "action_id": action_id,
        "block_id": block_id or action_id,
        "value": value,
        "team": _team(team_id),
        "enterprise": None,
        "is_enterprise_install": False,
        "view": dict(view),
    }


def hook_url(kind: str, team_id: str, base: str = "https://hooks.slack.com") -> str:
    return f"{base}/{kind}/{team_id}/{secrets.randbelow(10**12)}/{secrets.token_urlsafe(18)}"


class SlackRequestSender:
    """Sends Slack's signed requests (events, slash commands, interactions) to one app URL.

    `hooks_url` is where `response_url`s point; give the fake Slack's `/hooks` URL so an app's
    `respond()` lands somewhere observable instead of at hooks.slack.com. `client` lets the
    caller share an `httpx.AsyncClient` (the caller closes it); otherwise each request uses a
    short-lived client so nothing is left open.
    """

    def __init__(
        self,
        url: str,
        signing_secret: str,
        team_id: str = "T0001",
        api_app_id: str = "A0001",
        *,
        bot_user_id: str = "UBOT",
        hooks_url: str = "https://hooks.slack.com",
        client: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.signing_secret = signing_secret
        self.team_id = team_id
        self.api_app_id = api_app_id
        self.bot_user_id = bot_user_id
        self.hooks_url = hooks_url.rstrip("/")
        self._client = client
        self._timeout = timeout

    def envelope_for(self, event: Mapping[str, Any], *, event_id: str | None = None) -> dict:
        """The Events API `event_callback` envelope around `event`."""
        event_ts = event.get("event_ts") or event.get("ts")
        event_time = int(float(event_ts)) if event_ts else int(time.time())
        context = {
            "et": event.get("type"),
            "tid": self.team_id,
            "aid": self.api_app_id,
            "cid": event.get("channel"),
        }
        return {
            "token": VERIFICATION_TOKEN,
            "team_id": self.team_id,
            "context_team_id": self.team_id,
            "context_enterprise_id": None,
            "api_app_id": self.api_app_id,
            "event": dict(event),
            "type": "event_callback",
            "event_id": event_id or new_id("Ev", 10),
            "event_time": event_time,
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": self.team_id,
                    "user_id": self.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
            "event_context": "4-"
            + base64.urlsafe_b64encode(json.dumps(context).encode()).decode().rstrip("="),
        }

    async def send_event(
        self,
        event: Mapping[str, Any],
        *,
        event_id: str | None = None,
        retry_num: int | None = None,
        retry_reason: str = "http_timeout",
        timestamp: int | None = None,
    ) -> httpx.Response:
        """Wrap `event` in an envelope and deliver it. Pass the same `event_id` with a
        `retry_num` to play Slack retrying a delivery it thinks failed."""
        envelope = self.envelope_for(event, event_id=event_id)
        return await self.send_envelope(
            envelope, retry_num=retry_num, retry_reason=retry_reason, timestamp=timestamp
        )

    async def send_envelope(
        self,
        envelope: Mapping[str, Any],
        *,
        retry_num: int | None = None,
        retry_reason: str = "http_timeout",
        timestamp: int | None = None,
    ) -> httpx.Response:
        """Deliver a ready envelope (e.g. again, as a retry)."""
        headers = {}
        if retry_num is not None:
            headers = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": retry_reason}
        body = json.dumps(envelope).encode()
        return await self._send_signed(body, "application/json", headers, timestamp)

    async def send_command(
        self,
        command: str,
        text: str,
        user_id: str,
        channel_id: str = "C0001",
        trigger_id: str | None = None,
        response_url: str | None = None,
        *,
        channel_name: str = "general",
        user_name: str | None = None,
        timestamp: int | None = None,
    ) -> httpx.Response:
        """Deliver a slash command, form-encoded as Slack sends it."""
        form = {
            "token": VERIFICATION_TOKEN,
            "team_id": self.team_id,
            "team_domain": self.team_id.lower(),
            "channel_id": channel_id,
            "channel_name": channel_name,
            "user_id": user_id,
            "user_name": user_name or user_id.lower(),
            "command": command,
            "text": text,
            "api_app_id": self.api_app_id,
            "is_enterprise_install": "false",
            "response_url": response_url or hook_url("commands", self.team_id, self.hooks_url),
            "trigger_id": trigger_id or new_trigger_id(),
        }
        body = urlencode(form).encode()
        return await self._send_signed(body, "application/x-www-form-urlencoded", {}, timestamp)

    async def send_interaction(
        self, payload: Mapping[str, Any], *, timestamp: int | None = None
    ) -> httpx.Response:
        """Deliver an interaction (block_actions, view_submission, shortcut...) as
        `payload=<json>`, form-encoded."""
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return await self._send_signed(body, "application/x-www-form-urlencoded", {}, timestamp)

    async def send_raw(self, body: bytes, headers: Mapping[str, str]) -> httpx.Response:
        """POST exactly these bytes and headers: for tampered or malformed requests."""
        if self._client is not None:
            return await self._client.post(self.url, content=body, headers=dict(headers))
        async with httpx.AsyncClient(timeout=self._timeout, verify=_tls_context()) as client:
            return await client.post(self.url, content=body, headers=dict(headers))

    def signed_headers(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """`X-Slack-Request-Timestamp` and `X-Slack-Signature` for `body`. A `timestamp` more
        than five minutes off makes a correctly signed request that apps must still reject."""
        ts = int(time.time()) if timestamp is None else timestamp
        return {
            "X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": sign(self.signing_secret, ts, body),
        }

    async def _send_signed(
        self,
        body: bytes,
        content_type: str,
        extra_headers: Mapping[str, str],
        timestamp: int | None,
    ) -> httpx.Response:
        headers = {
            "Content-Type": content_type,
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
            **self.signed_headers(body, timestamp),
            **extra_headers,
        }
        return await self.send_raw(body, headers)
