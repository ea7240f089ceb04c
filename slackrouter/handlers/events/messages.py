"""`message` events: a rep's reply, edit or deletion in a chat's thread goes to the visitor."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext

from slackrouter.services.replies import Replies, RepMessage

log = logging.getLogger(__name__)

# New human messages; every other subtype (joins, bot_message, ...) is not a reply.
REPLY_SUBTYPES = {None, "thread_broadcast", "file_share"}


def _rep_message(team_id: str, channel: str, message: dict[str, Any]) -> RepMessage | None:
    """A human's message with words in it, inside a thread (not the parent), or None."""
    thread_ts, ts, user, text = (message.get(k) for k in ("thread_ts", "ts", "user", "text"))
    if message.get("bot_id") or not all(isinstance(v, str) for v in (thread_ts, ts, user, text)):
        return None
    if thread_ts == ts or not text.strip():
        return None
    return RepMessage(
        team_id=team_id, channel=channel, thread_ts=thread_ts, ts=ts, user_id=user, text=text
    )


def register(app: AsyncApp, *, replies: Replies) -> None:
    @app.event("message")
    async def thread_message(event: dict[str, Any], context: AsyncBoltContext) -> None:
        team_id = context.team_id or event.get("team") or ""
        channel = str(event.get("channel", ""))
        subtype = event.get("subtype")
        if subtype == "message_changed":
            reply = _rep_message(team_id, channel, event.get("message") or {})
            outcome = await replies.edit(reply) if reply else "ignored"
        elif subtype == "message_deleted":
            outcome = await replies.delete(
                team_id=team_id, channel=channel, ts=str(event.get("deleted_ts", ""))
            )
        elif subtype in REPLY_SUBTYPES:
            reply = _rep_message(team_id, channel, event)
            outcome = await replies.relay(reply) if reply else "ignored"
        else:
            outcome = "ignored"
        log.debug("message event subtype=%s channel=%s: %s", subtype, channel, outcome)
