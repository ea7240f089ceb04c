"""Block Kit for chats, built by pure functions. Visitor text only ever goes into `plain_text`
objects or escaped fallback text, so it can never ping or link as anyone."""

from __future__ import annotations

import re
from typing import Any

from slackrouter.adapters.slack.text import escape_visitor_text, plain_text_object

Blocks = list[dict[str, Any]]

FALLBACK_LIMIT = 300
USER_ID = re.compile(r"[UW][A-Z0-9]{2,20}")

CHAT_BUTTONS = ("claim", "transfer", "close")
_CHAT_BUTTONS: dict[str, dict[str, Any]] = {
    "claim": {
        "type": "button",
        "action_id": "chat_claim",
        "text": {"type": "plain_text", "text": "Claim"},
        "style": "primary",
    },
    "transfer": {
        "type": "button",
        "action_id": "chat_transfer",
        "text": {"type": "plain_text", "text": "Transfer"},
    },
    "close": {
        "type": "button",
        "action_id": "chat_close",
        "text": {"type": "plain_text", "text": "Close"},
        "confirm": {
            "title": {"type": "plain_text", "text": "Close this chat?"},
            "text": {
                "type": "plain_text",
                "text": "The visitor is told the chat has ended; replies stop reaching them.",
            },
            "confirm": {"type": "plain_text", "text": "Close chat"},
            "deny": {"type": "plain_text", "text": "Cancel"},
        },
    },
}


def _fallback(prefix: str, text: str) -> str:
    short = text if len(text) <= FALLBACK_LIMIT else text[: FALLBACK_LIMIT - 1] + "…"
    return escape_visitor_text(f"{prefix}{short}")


def parent_message(
    *,
    chatflow_name: str,
    visitor_name: str | None,
    identity_verified: bool,
    page_url: str | None,
    text: str,
    explanation: str,
    mention: tuple[str, ...] = (),
    missed: bool = False,
    status: str | None = None,
    buttons: tuple[str, ...] = CHAT_BUTTONS,
    note_hint: str | None = None,
) -> tuple[str, Blocks]:
    """The first message of a chat's thread: who, where, what, why it came to you, and the
    buttons to work it (see `chat_state`).

    In a channel, `mention` names the reps offered the chat (ids only, so this is our markup,
    never the visitor's); `missed` marks a chat nobody could take. `status` (plain text) says who
    has it, or that it is closed; `note_hint` how replies and notes work in this chatflow."""
    who = visitor_name or "A visitor"
    if visitor_name and not identity_verified:
        who += " (unverified)"
    details = [plain_text_object(f"{who} · {chatflow_name}", max_len=2000)]
    if page_url:
        details.append(plain_text_object(f"on {page_url}", max_len=2000))
    blocks: Blocks = []
    if status:
        blocks.append({"type": "section", "text": plain_text_object(status)})
    ids = [user_id for user_id in mention if USER_ID.fullmatch(user_id)]
    if ids:
        people = " ".join(f"<@{user_id}>" for user_id in ids)
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": f"{people}: new chat"}}
        )
    elif missed:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": "*Missed chat*: nobody was available"},
            }
        )
    blocks += [
        {"type": "context", "elements": details},
        {"type": "section", "text": plain_text_object(text)},
        {"type": "context", "elements": [plain_text_object(explanation, max_len=2000)]},
    ]
    if note_hint:
        blocks.append({"type": "context", "elements": [plain_text_object(note_hint, 2000)]})
    if buttons:
        blocks.append(
            {
                "type": "actions",
                "block_id": "chat_actions",
                "elements": [_CHAT_BUTTONS[name] for name in buttons],
            }
        )
    return _fallback(f"New chat from {who}: ", text), blocks


def chat_state(
    *, assignee_name: str | None, closed: bool, closed_by_name: str | None
) -> tuple[str | None, tuple[str, ...]]:
    """The status line and buttons of a chat's first message: who has it, or that it is closed
    (no buttons then: a closed chat is done)."""
    if closed:
        return f"Closed by {closed_by_name or 'a rep'}", ()
    if assignee_name:
        return f"{assignee_name} has this chat", ("transfer", "close")
    return None, CHAT_BUTTONS


def note_hint(note_mode: str, note_prefix: str) -> str:
    """How this chatflow treats thread messages, for the reps reading its chats."""
    if note_mode == "reverse":
        return (
            "Messages in this thread are internal notes. To answer the visitor, use the "
            "message's ⋯ menu → Send to visitor."
        )
    return (
        f"Replies in this thread go to the visitor; start a message with {note_prefix} for a note."
    )


def offer_in_thread(*, mention: tuple[str, ...]) -> tuple[str, Blocks]:
    """A reply in a channel chat's thread that offers the chat to the next reps, after nobody
    answered in time. `mention` holds user ids only, so the mentions are our markup."""
    people = " ".join(f"<@{user_id}>" for user_id in mention if USER_ID.fullmatch(user_id))
    ask = "nobody has answered this chat yet. Can you take it?"
    section = {"type": "section", "text": {"type": "mrkdwn", "text": f"{people}: {ask}"}}
    return ask[0].upper() + ask[1:], [section]


def visitor_reply(*, visitor_name: str | None, text: str) -> tuple[str, Blocks]:
    """A later visitor message, posted into the chat's thread."""
    blocks: Blocks = [{"type": "section", "text": plain_text_object(text)}]
    return _fallback(f"{visitor_name or 'Visitor'}: ", text), blocks
