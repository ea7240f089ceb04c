"""Block Kit for chats, built by pure functions. Visitor text only ever goes into `plain_text`
objects or escaped fallback text, so it can never ping or link as anyone."""

from __future__ import annotations

import re
from typing import Any

from slackrouter.adapters.slack.text import escape_visitor_text, plain_text_object

Blocks = list[dict[str, Any]]

FALLBACK_LIMIT = 300
USER_ID = re.compile(r"[UW][A-Z0-9]{2,20}")


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
) -> tuple[str, Blocks]:
    """The first message of a chat's thread: who, where, what, and why it came to you.

    In a channel, `mention` names the reps offered the chat (ids only, so this is our markup,
    never the visitor's); `missed` marks a chat nobody could take."""
    who = visitor_name or "A visitor"
    if visitor_name and not identity_verified:
        who += " (unverified)"
    details = [plain_text_object(f"{who} · {chatflow_name}", max_len=2000)]
    if page_url:
        details.append(plain_text_object(f"on {page_url}", max_len=2000))
    blocks: Blocks = []
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
    return _fallback(f"New chat from {who}: ", text), blocks


def visitor_reply(*, visitor_name: str | None, text: str) -> tuple[str, Blocks]:
    """A later visitor message, posted into the chat's thread."""
    blocks: Blocks = [{"type": "section", "text": plain_text_object(text)}]
    return _fallback(f"{visitor_name or 'Visitor'}: ", text), blocks
