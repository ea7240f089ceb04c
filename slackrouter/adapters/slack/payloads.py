"""Slack's request bodies checked for shape before Bolt sees them.

A signed request can still be malformed (a bug, a proxy, a fuzzer): it gets a 400 and changes
nothing, instead of an exception inside Bolt or a wrongly typed value stored as a reply.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

# Fields of a message event that, when present, are strings.
MESSAGE_STRINGS = ("user", "channel", "ts", "thread_ts", "text", "subtype", "bot_id", "team")
MESSAGE_OBJECTS = ("message", "previous_message")


def _strings(node: dict[str, Any], names: tuple[str, ...], where: str) -> str | None:
    for name in names:
        if name in node and node[name] is not None and not isinstance(node[name], str):
            return f"{where}.{name} must be a string"
    return None


def _event_problem(event: Any) -> str | None:
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        return "event must be an object with a type"
    if event["type"] != "message":
        return None
    problem = _strings(event, (*MESSAGE_STRINGS, "deleted_ts", "channel_type"), "event")
    if problem:
        return problem
    for name in MESSAGE_OBJECTS:
        inner = event.get(name)
        if inner is None:
            continue
        if not isinstance(inner, dict):
            return f"event.{name} must be an object"
        problem = _strings(inner, MESSAGE_STRINGS, f"event.{name}")
        if problem:
            return problem
    return None


def _json_problem(body: bytes) -> str | None:
    try:
        envelope = json.loads(body)
    except ValueError:
        return "the body is not JSON"
    if not isinstance(envelope, dict) or not isinstance(envelope.get("type"), str):
        return "the body must be an object with a type"
    if envelope["type"] == "event_callback":
        if not isinstance(envelope.get("team_id", ""), str):
            return "team_id must be a string"
        return _event_problem(envelope.get("event"))
    return None


def _interaction_problem(raw: str) -> str | None:
    try:
        payload = json.loads(raw)
    except ValueError:
        return "payload is not JSON"
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
        return "payload must be an object with a type"
    user = payload.get("user")
    if not isinstance(user, dict) or not isinstance(user.get("id"), str):
        return "payload.user must be an object with an id"
    for name in ("team", "channel", "container", "message", "view"):
        if payload.get(name) is not None and not isinstance(payload[name], dict):
            return f"payload.{name} must be an object"
    if payload["type"] == "block_actions":
        actions = payload.get("actions")
        if not isinstance(actions, list) or not actions:
            return "payload.actions must be a non-empty list"
        for action in actions:
            if not isinstance(action, dict) or not isinstance(action.get("action_id"), str):
                return "each action must be an object with an action_id"
    if payload["type"] in {"view_submission", "view_closed"}:
        view = payload.get("view")
        if not isinstance(view, dict) or not isinstance(view.get("callback_id", ""), str):
            return "payload.view must be an object with a callback_id"
    return None


def slack_request_problem(body: bytes, content_type: str) -> str | None:
    """Why this signed body is not one of Slack's request shapes, or None when it is."""
    if content_type.startswith("application/json"):
        return _json_problem(body)
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=True, keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        return "the body is not a form"
    if "payload" in form:
        return _interaction_problem(form["payload"][0])
    for name in ("command", "user_id", "team_id"):
        if not form.get(name, [""])[0]:
            return f"a slash command needs {name}"
    return None
