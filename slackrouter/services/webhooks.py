"""The outbound webhook: each rep reply (and close) POSTed to the website, signed like the
visitor API's server calls, with an idempotency key, retried from the outbox for up to a day."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from slackrouter.adapters.db import repository as repo
from slackrouter.adapters.db.models import Chatflow, Conversation, Message
from slackrouter.api.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from slackrouter.services.delivery import Attempt

IDEMPOTENCY_HEADER = "Idempotency-Key"


class WebhookRefused(httpx.HTTPError):
    """The website answered something other than 2xx; retried like a network error."""


def queue_webhook(
    session: AsyncSession,
    *,
    team_id: str,
    webhook_url: str | None,
    conversation_id: str,
    event: str,
    message_id: int | None,
    now: Any,
) -> bool:
    """Owe the website (its chatflow's webhook URL, if any) a call about this conversation;
    True when one is owed."""
    if not webhook_url:
        return False
    repo.add_outbox(
        session,
        team_id=team_id,
        kind="webhook",
        conversation_id=conversation_id,
        thread_id=None,
        message_id=message_id,
        now=now,
        payload={"event": event},
    )
    return True


class WebhookSender:
    def __init__(self, *, timeout: float = 10.0) -> None:
        self._timeout = timeout

    async def send(self, session: AsyncSession, item: Attempt) -> None:
        conversation = await session.get_one(Conversation, item.conversation_id)
        chatflow = await session.get_one(Chatflow, conversation.chatflow_id)
        if not chatflow.webhook_url:
            return  # the site removed its webhook meanwhile: nothing is owed any more
        body: dict[str, Any] = {
            "event": (item.payload or {}).get("event", "message"),
            "id": f"evt_{item.id}",
            "chatflow_id": chatflow.id,
            "conversation_id": conversation.id,
            "visitor_id": conversation.visitor_id,
        }
        if item.message_id is not None:
            message = await session.get_one(Message, item.message_id)
            body["message"] = {
                "id": message.id,
                "author": message.author,
                "text": None if message.deleted else message.text,
                "sent_at": message.created_at.isoformat(),
            }
        raw = json.dumps(body).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(chatflow.signing_secret, timestamp, raw),
            IDEMPOTENCY_HEADER: f"evt_{item.id}",
        }
        async with httpx.AsyncClient(timeout=self._timeout) as client:
            response = await client.post(chatflow.webhook_url, content=raw, headers=headers)
        if not response.is_success:
            raise WebhookRefused(f"the website answered {response.status_code}")
        item.result = {"status": response.status_code}
