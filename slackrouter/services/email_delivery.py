"""Emailing a chat from the outbox to the rep who follows it up (owner or offline fallback)."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from slackrouter.adapters.db.models import Chatflow, Conversation, Message, Rep
from slackrouter.adapters.mail import Mailer
from slackrouter.adapters.mail_render import TranscriptLine, chat_email
from slackrouter.adapters.slack.gateway import SlackGateway
from slackrouter.services.delivery import Attempt, Undeliverable

log = logging.getLogger(__name__)


class ChatMailer:
    def __init__(self, slack: SlackGateway, mailer: Mailer, *, mail_from: str) -> None:
        self._slack = slack
        self._mailer = mailer
        self._mail_from = mail_from
        self._domain = mail_from.rsplit("@", 1)[-1].strip(" >") or "localhost"

    async def send(self, session: AsyncSession, item: Attempt) -> None:
        payload = item.payload or {}
        conversation = await session.get_one(Conversation, item.conversation_id)
        chatflow = await session.get_one(Chatflow, conversation.chatflow_id)
        to_user = str(payload["to_user"])
        rep = await session.get(Rep, (conversation.team_id, to_user))
        address = rep.email if rep is not None else None
        if not address:
            slack = await self._slack.for_team(conversation.team_id)
            address = (await slack.profile(to_user)).email
        if not address:
            raise Undeliverable(f"{to_user} has no email address in Slack")
        messages = await session.scalars(
            select(Message)
            .where(
                Message.conversation_id == conversation.id,
                Message.author.in_(("visitor", "rep")),
                Message.deleted.is_(False),
            )
            .order_by(Message.id)
        )
        transcript = [
            TranscriptLine(
                author="Visitor" if m.author == "visitor" else "Rep",
                text=m.text,
                sent_at=m.created_at,
            )
            for m in messages
        ]
        email = chat_email(
            to=address,
            sender=self._mail_from,
            chatflow_name=chatflow.name,
            visitor_name=conversation.visitor_name,
            visitor_email=conversation.visitor_email,
            identity_verified=conversation.identity_verified,
            page_url=conversation.page_url,
            transcript=transcript,
            reason=str(payload.get("reason") or "Nobody was available"),
            conversation_id=conversation.id,
            domain=self._domain,
        )
        await self._mailer.send(email)
        item.result = {"to": address}
        log.info("emailed conversation=%s to=%s", conversation.id, to_user)
