"""A sample chat email for the mail tests (Nora asks Sales about shipping); reading mail back."""

from __future__ import annotations

import email
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from typing import Any

from slackrouter.adapters.mail_render import TranscriptLine, chat_email

CHAT_START = datetime(2025, 3, 4, 14, 2, 5, tzinfo=UTC)
"""The time of the sample chat's first line; its second comes a minute later."""

CHAT_HEADERS = frozenset(
    {
        "Subject",
        "From",
        "To",
        "Reply-To",
        "Date",
        "Message-ID",
        "Auto-Submitted",
        "X-Auto-Response-Suppress",
        "MIME-Version",
        "Content-Type",
    }
)
"""Every header a chat email has, and no other; `Reply-To` only when the visitor's address works."""


def sample_chat(**overrides: Any) -> EmailMessage:
    """The sample chat as `chat_email` builds it; `overrides` replace its arguments."""
    arguments: dict[str, Any] = {
        "to": "rep@example.com",
        "sender": "slackrouter <chat@example.com>",
        "chatflow_name": "Sales",
        "visitor_name": "Nora",
        "visitor_email": "nora@example.org",
        "identity_verified": False,
        "page_url": "https://example.com/pricing?plan=team&seats=5",
        "transcript": [
            TranscriptLine("Nora", "Hi, do you ship to Norway?", CHAT_START),
            TranscriptLine(
                "Nora", "We need 5 seats.\nBy Friday.", CHAT_START + timedelta(minutes=1)
            ),
        ],
        "reason": "Nobody on the route was available",
        "conversation_id": "c0ffee-42",
        "domain": "chat.example.com",
    }
    arguments.update(overrides)
    return chat_email(**arguments)


def parse_email(raw: bytes) -> EmailMessage:
    """An email's wire bytes parsed as a receiver reads them, with the modern `EmailMessage` API."""
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed
