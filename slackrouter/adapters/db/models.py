"""SQLAlchemy 2 typed models. Every row that belongs to a workspace carries its `team_id`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[str]: JSON}


class Chatflow(Base):
    """One chat entry point on the website, with its own routing and messages."""

    __tablename__ = "chatflows"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    team_id: Mapped[str] = mapped_column(String(20), index=True)
    name: Mapped[str] = mapped_column(String(200))
    public_key: Mapped[str] = mapped_column(String(64), unique=True)
    signing_secret: Mapped[str] = mapped_column(String(128))
    route_users: Mapped[list[str]] = mapped_column(default=list)
    welcome_message: Mapped[str] = mapped_column(Text, default="Hi! How can we help?")
    away_message: Mapped[str] = mapped_column(
        Text, default="We're away right now. Leave your email and we'll get back to you."
    )
    note_prefix: Mapped[str] = mapped_column(String(20), default=";;")
    # "prefix": thread messages reach the visitor unless they start with `note_prefix`;
    # "reverse": every thread message is a note unless sent with the "Send to visitor" shortcut.
    note_mode: Mapped[str] = mapped_column(String(10), default="prefix")
    route_teams: Mapped[list[str]] = mapped_column(default=list)  # S… user groups, tm_… teams
    assignment: Mapped[str] = mapped_column(String(20), default="all")  # all | round_robin
    rotate_to_owner: Mapped[bool] = mapped_column(Boolean, default=False)
    offline_fallback: Mapped[str | None] = mapped_column(String(20))
    channel_id: Mapped[str | None] = mapped_column(String(20))  # set: post there, not in DMs
    escalation_seconds: Mapped[int] = mapped_column(Integer, default=120)
    hours: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # {"timezone", "days": {...}}
    # Where each rep reply (and close) is POSTed, signed with the signing secret; None: nowhere.
    webhook_url: Mapped[str | None] = mapped_column(String(2000))
    # The website widget's look: colours, position and texts (see the widget's README section).
    widget: Mapped[dict[str, Any]] = mapped_column(default=dict)
    out_of_hours_message: Mapped[str] = mapped_column(
        Text, default="We're closed right now. Leave your email and we'll get back to you."
    )
    created_at: Mapped[datetime]


class Rep(Base):
    """A Slack user who may answer chats: profile, opt-in and the cached presence."""

    __tablename__ = "reps"

    team_id: Mapped[str] = mapped_column(String(20), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(20), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    avatar_url: Mapped[str | None] = mapped_column(String(500))
    email: Mapped[str | None] = mapped_column(String(320))
    is_bot: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    is_guest: Mapped[bool] = mapped_column(Boolean, default=False)
    profile_checked_at: Mapped[datetime | None]
    opted_in: Mapped[bool] = mapped_column(Boolean, default=True)
    presence: Mapped[str] = mapped_column(String(10), default="unknown")
    presence_checked_at: Mapped[datetime | None]
    dm_channel_id: Mapped[str | None] = mapped_column(String(20))
    dnd: Mapped[bool] = mapped_column(Boolean, default=False)
    dnd_checked_at: Mapped[datetime | None]
    last_assigned_at: Mapped[datetime | None]


class Conversation(Base):
    """One visitor's chat on one chatflow, from first message to close."""

    __tablename__ = "conversations"
    __table_args__ = (
        # At most one open conversation per visitor and chatflow: two first messages that race
        # both try to insert, and the loser joins the winner's conversation.
        Index(
            "uq_conversations_open_visitor",
            "chatflow_id",
            "visitor_id",
            unique=True,
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    team_id: Mapped[str] = mapped_column(String(20), index=True)
    chatflow_id: Mapped[str] = mapped_column(ForeignKey("chatflows.id", ondelete="CASCADE"))
    visitor_id: Mapped[str] = mapped_column(String(200))
    visitor_name: Mapped[str | None] = mapped_column(String(200))
    visitor_email: Mapped[str | None] = mapped_column(String(320))
    identity_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    page_url: Mapped[str | None] = mapped_column(String(2000))
    token: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(10), default="open")
    routing_outcome: Mapped[str] = mapped_column(String(10))
    routing: Mapped[dict[str, Any]] = mapped_column(default=dict)
    assignee: Mapped[str | None] = mapped_column(String(20))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    offered: Mapped[list[str]] = mapped_column(default=list)  # reps offered the chat so far
    missed: Mapped[bool] = mapped_column(Boolean, default=False)
    closed_at: Mapped[datetime | None]
    closed_by: Mapped[str | None] = mapped_column(String(20))  # the rep who pressed Close
    created_at: Mapped[datetime]


class Message(Base):
    """A message in a conversation: from the visitor, or a rep's reply or internal note."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("chatflow_id", "visitor_id", "client_message_id"),
        UniqueConstraint("team_id", "slack_channel", "slack_ts"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    team_id: Mapped[str] = mapped_column(String(20))
    conversation_id: Mapped[str] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    author: Mapped[str] = mapped_column(String(10))  # visitor | rep | note
    rep_user_id: Mapped[str | None] = mapped_column(String(20))
    text: Mapped[str] = mapped_column(Text)
    # Visitor messages: idempotency by the client's message id.
    chatflow_id: Mapped[str | None] = mapped_column(String(40))
    visitor_id: Mapped[str | None] = mapped_column(String(200))
    client_message_id: Mapped[str | None] = mapped_column(String(100))
    # Rep messages: where Slack has them; a Slack event retry hits the unique constraint.
    slack_channel: Mapped[str | None] = mapped_column(String(20))
    slack_ts: Mapped[str | None] = mapped_column(String(30))
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    edited_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class SlackThread(Base):
    """One place a conversation was posted in Slack: a rep's DM (or a channel) and its thread."""

    __tablename__ = "slack_threads"
    __table_args__ = (UniqueConstraint("team_id", "channel_id", "thread_ts"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    team_id: Mapped[str] = mapped_column(String(20))
    conversation_id: Mapped[str] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    rep_user_id: Mapped[str | None] = mapped_column(String(20))
    channel_id: Mapped[str | None] = mapped_column(String(20))
    thread_ts: Mapped[str | None] = mapped_column(String(30))
    created_at: Mapped[datetime]


class FeedItem(Base):
    """What the visitor sees change, in order: the `id` is the visitor API's cursor."""

    __tablename__ = "feed"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(30))  # message | message_changed | message_deleted
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    created_at: Mapped[datetime]


class OutboxItem(Base):
    """Work owed to the outside world, written in the transaction that caused it."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at"),
        Index("ix_outbox_pending", "status", "id"),
        Index("ix_outbox_thread", "thread_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    team_id: Mapped[str] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(30))  # post_parent | post_reply
    conversation_id: Mapped[str | None] = mapped_column(String(40), index=True)
    thread_id: Mapped[int | None] = mapped_column(BigInteger)
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(10), default="pending")  # pending|done|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime]
    done_at: Mapped[datetime | None]


class Team(Base):
    """A team defined in slackrouter (Slack user groups need a paid plan)."""

    __tablename__ = "teams"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    team_id: Mapped[str] = mapped_column(String(20), index=True)
    name: Mapped[str] = mapped_column(String(200))
    members: Mapped[list[str]] = mapped_column(default=list)
    created_at: Mapped[datetime]


class UserGroup(Base):
    """A cached Slack user group and its members, refreshed by the scheduler."""

    __tablename__ = "usergroups"

    team_id: Mapped[str] = mapped_column(String(20), primary_key=True)
    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    handle: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200))
    members: Mapped[list[str]] = mapped_column(default=list)
    refreshed_at: Mapped[datetime]


class Contact(Base):
    """A known visitor: tracking tokens, email, name, and the rep who owns them."""

    __tablename__ = "contacts"
    __table_args__ = (UniqueConstraint("team_id", "email"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    team_id: Mapped[str] = mapped_column(String(20), index=True)
    email: Mapped[str | None] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(200))
    owner_user_id: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ContactToken(Base):
    """A tracking cookie token linked to a contact."""

    __tablename__ = "contact_tokens"

    team_id: Mapped[str] = mapped_column(String(20), primary_key=True)
    token: Mapped[str] = mapped_column(String(200), primary_key=True)
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime]


class Timer(Base):
    """Work due later (escalation, the debounced offline email); the scheduler fires due rows."""

    __tablename__ = "timers"
    __table_args__ = (
        UniqueConstraint("conversation_id", "kind"),
        Index("ix_timers_due", "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    team_id: Mapped[str] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(30))  # escalation | offline_email
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    due_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(10), default="pending")  # pending|done|cancelled
    created_at: Mapped[datetime]
