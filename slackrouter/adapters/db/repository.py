"""The queries the services share, so that each lives in one place."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    String,
    bindparam,
    func,
    literal_column,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.orm.util import AliasedClass
from sqlalchemy.sql import TableValuedAlias
from sqlalchemy.sql.elements import Label

from slackrouter.adapters.db.models import (
    Chatflow,
    Conversation,
    FeedItem,
    Message,
    OutboxItem,
    Rep,
    SlackThread,
    Timer,
)

T = TypeVar("T")

# Open conversations, written into the statement rather than bound: a plan made for any value
# of a parameter cannot use the index of open conversations (its rows are status = 'open').
_OPEN = literal_column("'open'")


def _unnest(name: str, columns: tuple[str, str]) -> TableValuedAlias:
    """A table on PostgreSQL made of one array per column, bound as `{name}_{column}`: the
    statement's text is the same whatever the number of rows."""
    return (
        func.unnest(*(bindparam(f"{name}_{column}", type_=ARRAY(String)) for column in columns))
        .table_valued(*columns)
        .render_derived(name=name)
    )


def _arrays(name: str, columns: tuple[str, str], rows: list[tuple[str, str]]) -> dict[str, Any]:
    """The parameters of `_unnest(name, columns)` for these rows."""
    return {f"{name}_{column}": [row[i] for row in rows] for i, column in enumerate(columns)}


def _lookup(entity: type[T], name: str, *where: ColumnElement[bool]) -> AliasedClass[T]:
    """`entity` as a LATERAL lookup of at most one row (LIMIT 1 keeps the planner from making
    it a join), to be joined ON true."""
    return aliased(entity, select(entity).where(*where).limit(1).lateral(name))


# The writer's two lookups on PostgreSQL, built once (building a LATERAL over an aliased entity
# costs more than running it). See `chatflows_and_messages` for why they are lookups.
_MESSAGE_KEYS = ("visitor_id", "client_message_id")
_WANTED = _unnest("wanted", _MESSAGE_KEYS)
_STORED = _lookup(
    Message,
    "stored",
    Message.chatflow_id == Chatflow.id,
    Message.visitor_id == _WANTED.c.visitor_id,
    Message.client_message_id == _WANTED.c.client_message_id,
)
_CHATFLOWS_AND_STORED = (
    select(Chatflow, _STORED)
    .select_from(Chatflow)
    .join(_WANTED, true())
    .outerjoin(_STORED, true())
    .where(Chatflow.public_key.in_(bindparam("public_keys", expanding=True)))
)
_VISITOR_KEYS = ("chatflow_id", "visitor_id")


def _timer_status(conversation_id: ColumnElement[str]) -> Label[str]:
    """The status of the conversation's timer of the kind bound as "timer", by its unique key."""
    return (
        select(Timer.status)
        .where(Timer.conversation_id == conversation_id, Timer.kind == bindparam("timer"))
        .scalar_subquery()
        .label("timer_status")
    )


_VISITORS = _unnest("visitors", _VISITOR_KEYS)
_CONVERSATIONS = Conversation.__table__
# What the visitor message writer reads of a conversation (`Chat`): plain columns, not an ORM
# object to load, track and flush (loading 64 conversations with their threads as objects cost
# three times the statement read as columns). Of the routing record, only the away message: the
# rest (its explanation names every rep of the route) is not decoded for every message.
_CHAT_COLUMNS = (
    *(
        _CONVERSATIONS.c[name]
        for name in (
            "id",
            "team_id",
            "chatflow_id",
            "visitor_id",
            "token",
            "routing_outcome",
            "offered",
            "identity_verified",
            "visitor_name",
            "visitor_email",
        )
    ),
    _CONVERSATIONS.c.routing["away_message"].as_string().label("away_message"),
)
_OPEN_AT = (
    select(*_CHAT_COLUMNS)
    .where(
        _CONVERSATIONS.c.chatflow_id == _VISITORS.c.chatflow_id,
        _CONVERSATIONS.c.visitor_id == _VISITORS.c.visitor_id,
        _CONVERSATIONS.c.status == _OPEN,
    )
    .limit(1)
    .lateral("open")
)
# A Slack thread's rep (a join condition, as the rep's table is joined to the thread's) and the
# channel its posts go to: its own once its first post is made, else its rep's DM if opened.
# The writer, the delivery round and the Slack poster all read them.
_THREAD_TABLE, _REP_TABLE = SlackThread.__table__, Rep.__table__
THREAD_REP = (_REP_TABLE.c.team_id == _THREAD_TABLE.c.team_id) & (
    _REP_TABLE.c.user_id == _THREAD_TABLE.c.rep_user_id
)
THREAD_CHANNEL = func.coalesce(_THREAD_TABLE.c.channel_id, _REP_TABLE.c.dm_channel_id)
_OPEN_CONVERSATIONS = (
    select(
        _OPEN_AT,
        SlackThread.id.label("thread_id"),
        THREAD_CHANNEL.label("thread_channel"),
        _timer_status(_OPEN_AT.c.id),
    )
    .select_from(_VISITORS)
    .join(_OPEN_AT, true())
    .outerjoin(SlackThread, SlackThread.conversation_id == _OPEN_AT.c.id)
    .outerjoin(_REP_TABLE, THREAD_REP)
    .order_by(SlackThread.id)
)


def _json_pairs(name: str) -> Select[Any]:
    """The pairs of strings bound as `name`, one JSON array of pairs, as rows (SQLite)."""
    value = literal_column("value")
    return select(func.json_extract(value, "$[0]"), func.json_extract(value, "$[1]")).select_from(
        func.json_each(bindparam(name))
    )


# The same two lookups elsewhere (SQLite): the pairs bound as one JSON array, read as rows by
# json_each, so that the statement's text is the same whatever the number of pairs. SQLite
# searches the unique indexes by each pair (tests/integration/test_sqlite_lookup_plans.py).
# A list of pairs expanded as the statement ran cost a batch of 64 later messages 10 ms of the
# web process (rendering the statement with its 128 placeholders, and binding them), the JSON
# array 5.
_CHATFLOWS_AND_LISTED = (
    select(Chatflow, Message)
    .outerjoin(
        Message,
        (Message.chatflow_id == Chatflow.id)
        & tuple_(Message.visitor_id, Message.client_message_id).in_(_json_pairs("pairs")),
    )
    .where(Chatflow.public_key.in_(bindparam("public_keys", expanding=True)))
)
_OPEN_LISTED = (
    select(
        *_CHAT_COLUMNS,
        SlackThread.id.label("thread_id"),
        THREAD_CHANNEL.label("thread_channel"),
        _timer_status(_CONVERSATIONS.c.id),
    )
    .outerjoin(SlackThread, SlackThread.conversation_id == _CONVERSATIONS.c.id)
    .outerjoin(_REP_TABLE, THREAD_REP)
    .where(
        tuple_(_CONVERSATIONS.c.chatflow_id, _CONVERSATIONS.c.visitor_id).in_(_json_pairs("pairs")),
        _CONVERSATIONS.c.status == _OPEN,
    )
    .order_by(SlackThread.id)
)
_CHATS_BY_ID = select(*_CHAT_COLUMNS).where(
    _CONVERSATIONS.c.id.in_(bindparam("ids", expanding=True))
)


async def chatflow_by_key(session: AsyncSession, public_key: str) -> Chatflow | None:
    return await session.scalar(select(Chatflow).where(Chatflow.public_key == public_key))


# Built once: routing reads the route's reps for every batch of new chats, and building a
# statement with a list in it costs about as much as running it.
_REPS_BY_ID = select(Rep).where(
    Rep.team_id == bindparam("team"), Rep.user_id.in_(bindparam("ids", expanding=True))
)


async def reps_by_id(
    session: AsyncSession, team_id: str, user_ids: Iterable[str]
) -> dict[str, Rep]:
    ids = sorted(set(user_ids))
    if not ids:
        return {}
    rows = await session.scalars(_REPS_BY_ID, {"team": team_id, "ids": ids})
    return {rep.user_id: rep for rep in rows}


@dataclass(slots=True)
class RepRow:
    """A rep as routing reads it: what its availability is made of, round robin's stamp, and
    the name and avatar a visitor is shown. Read as columns, not ORM objects: routing reads
    the route's reps (40, say) for every batch of new chats, and loading each as an object
    cost a batch of one new chat more than a millisecond."""

    team_id: str
    user_id: str
    name: str | None
    avatar_url: str | None
    opted_in: bool
    presence: str
    presence_checked_at: datetime | None
    dnd: bool
    deleted: bool
    is_bot: bool
    is_guest: bool
    last_assigned_at: datetime | None
    dm_channel_id: str | None  # where the rep's chats are posted, once opened


_REP_ROWS_BY_ID = select(*(Rep.__table__.c[f.name] for f in fields(RepRow))).where(
    Rep.team_id == bindparam("team"), Rep.user_id.in_(bindparam("ids", expanding=True))
)
_STAMP_REP = (
    update(Rep.__table__)
    .where(Rep.team_id == bindparam("team"), Rep.user_id == bindparam("user"))
    .values(last_assigned_at=bindparam("stamp"))
)


async def rep_rows_by_id(
    session: AsyncSession, team_id: str, user_ids: Iterable[str]
) -> dict[str, RepRow]:
    ids = sorted(set(user_ids))
    if not ids:
        return {}
    rows = await session.execute(_REP_ROWS_BY_ID, {"team": team_id, "ids": ids})
    return {row.user_id: RepRow(*row) for row in rows}


async def stamp_reps(session: AsyncSession, stamps: Mapping[tuple[str, str], datetime]) -> None:
    """Write round robin's stamps, (team, rep): when the rep was last given a chat."""
    if stamps:
        await session.execute(
            _STAMP_REP,
            [{"team": team, "user": user, "stamp": at} for (team, user), at in stamps.items()],
        )


async def ensure_reps(session: AsyncSession, team_id: str, user_ids: Iterable[str]) -> None:
    """Create a row (profile and presence unknown) for every route user who has none yet."""
    wanted = set(user_ids)
    known = await reps_by_id(session, team_id, wanted)
    for user_id in sorted(wanted - known.keys()):
        session.add(Rep(team_id=team_id, user_id=user_id))


async def chatflows_and_messages(
    session: AsyncSession, public_keys: Iterable[str], messages: Iterable[tuple[str, str]]
) -> tuple[dict[str, Chatflow], dict[tuple[str, str, str], Message]]:
    """The chatflows of these public keys, and the visitor messages already stored in them of
    these (visitor id, client message id), by (chatflow id, visitor id, client message id): one
    statement (the visitor message writer's).

    On PostgreSQL each pair is looked up by the messages' unique index (a LATERAL lookup per
    pair, LIMIT 1 so that it stays one): a plan that does not hang on the table's statistics.
    A list of pairs is planned on them, and where they are missing or stale (autovacuum off or
    behind, and a prepared statement keeps the plan it made while the table was empty) it reads
    every message of the chatflow with one of the batch's client ids, a batch's cost then
    growing with the table (21 ms at 19,000 messages). The statement is built once, since
    building a LATERAL over an aliased entity costs more than running it."""
    wanted = sorted(set(messages))
    public = sorted(set(public_keys))
    if wanted and session.bind.dialect.name == "postgresql":
        rows = await session.execute(
            _CHATFLOWS_AND_STORED,
            {"public_keys": public, **_arrays("wanted", _MESSAGE_KEYS, wanted)},
        )
    else:
        rows = await session.execute(
            _CHATFLOWS_AND_LISTED, {"public_keys": public, "pairs": json.dumps(wanted)}
        )
    chatflows: dict[str, Chatflow] = {}
    found: dict[tuple[str, str, str], Message] = {}
    for chatflow, message in rows:
        chatflows[chatflow.public_key] = chatflow
        if message is not None:
            found[message.chatflow_id, message.visitor_id, message.client_message_id] = message  # type: ignore[index]
    return chatflows, found


@dataclass(eq=False)
class Chat:
    """A conversation as the visitor message writer reads, starts and answers it."""

    id: str
    team_id: str
    token: str
    routing_outcome: str
    offered: list[str]
    away_message: str | None
    identity_verified: bool
    visitor_name: str | None
    visitor_email: str | None


def _chat(row: Row[Any]) -> Chat:
    return Chat(
        id=row.id,
        team_id=row.team_id,
        token=row.token,
        routing_outcome=row.routing_outcome,
        offered=row.offered,
        away_message=row.away_message,
        identity_verified=row.identity_verified,
        visitor_name=row.visitor_name,
        visitor_email=row.visitor_email,
    )


@dataclass
class OpenConversations:
    """Visitors' open conversations, their Slack threads' ids (oldest first) and channels (where
    known), and which of them have a timer of the asked kind pending."""

    by_visitor: dict[tuple[str, str], Chat] = field(default_factory=dict)
    threads: dict[str, list[int]] = field(default_factory=dict)
    channels: dict[int, str | None] = field(default_factory=dict)
    timer_pending: set[str] = field(default_factory=set)


async def open_conversations(
    session: AsyncSession, pairs: Iterable[tuple[str, str]], *, timer: str
) -> OpenConversations:
    """The open conversation of each (chatflow id, visitor id) that has one, with its threads
    and whether its `timer` is pending, in one statement (the visitor message writer's). On
    PostgreSQL each pair is looked up by the open conversations' unique index, as in
    `chatflows_and_messages`. The timer's status is read by its unique key, where an EXISTS
    for a pending one may be planned as one pass over every pending timer."""
    found = OpenConversations()
    wanted = sorted(set(pairs))
    if not wanted:
        return found
    if session.bind.dialect.name == "postgresql":
        rows = await session.execute(
            _OPEN_CONVERSATIONS, {"timer": timer, **_arrays("visitors", _VISITOR_KEYS, wanted)}
        )
    else:
        rows = await session.execute(_OPEN_LISTED, {"timer": timer, "pairs": json.dumps(wanted)})
    for row in rows:
        key = (row.chatflow_id, row.visitor_id)
        if key not in found.by_visitor:
            found.by_visitor[key] = _chat(row)
        threads = found.threads.setdefault(row.id, [])
        if row.thread_id is not None:
            threads.append(row.thread_id)
            found.channels[row.thread_id] = row.thread_channel
        if row.timer_status == "pending":
            found.timer_pending.add(row.id)
    return found


async def chats_by_id(session: AsyncSession, ids: Iterable[str]) -> dict[str, Chat]:
    """Conversations as the visitor message writer answers them, by id."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    return {row.id: _chat(row) for row in await session.execute(_CHATS_BY_ID, {"ids": wanted})}


async def threads_of(session: AsyncSession, conversation_id: str) -> list[SlackThread]:
    rows = await session.scalars(
        select(SlackThread)
        .where(SlackThread.conversation_id == conversation_id)
        .order_by(SlackThread.id)
    )
    return list(rows)


async def thread_at(
    session: AsyncSession, team_id: str, channel_id: str, thread_ts: str
) -> SlackThread | None:
    return await session.scalar(
        select(SlackThread).where(
            SlackThread.team_id == team_id,
            SlackThread.channel_id == channel_id,
            SlackThread.thread_ts == thread_ts,
        )
    )


async def message_at(
    session: AsyncSession, team_id: str, channel_id: str, ts: str
) -> Message | None:
    return await session.scalar(
        select(Message).where(
            Message.team_id == team_id, Message.slack_channel == channel_id, Message.slack_ts == ts
        )
    )


def feed_row(conversation_id: str, message_id: int, kind: str, now: datetime) -> dict[str, Any]:
    """A feed entry's columns, for `add_feed` or a Core insert of many."""
    return {
        "conversation_id": conversation_id,
        "kind": kind,
        "message_id": message_id,
        "created_at": now,
    }


def add_feed(session: AsyncSession, message: Message, kind: str, now: datetime) -> None:
    session.add(FeedItem(**feed_row(message.conversation_id, message.id, kind, now)))


def outbox_row(
    *,
    team_id: str,
    kind: str,
    conversation_id: str,
    thread_id: int | None,
    message_id: int | None,
    now: datetime,
    payload: dict[str, Any] | None = None,
    due: datetime | None = None,
) -> dict[str, Any]:
    """An outbox row's columns, owed now (or when `due`), for `add_outbox` or a Core insert of
    many."""
    return {
        "payload": payload,
        "team_id": team_id,
        "kind": kind,
        "conversation_id": conversation_id,
        "thread_id": thread_id,
        "message_id": message_id,
        "next_attempt_at": due or now,
        "created_at": now,
    }


def add_outbox(
    session: AsyncSession,
    *,
    team_id: str,
    kind: str,
    conversation_id: str,
    thread_id: int | None,
    message_id: int | None,
    now: datetime,
    payload: dict[str, Any] | None = None,
) -> None:
    session.add(
        OutboxItem(
            **outbox_row(
                team_id=team_id,
                kind=kind,
                conversation_id=conversation_id,
                thread_id=thread_id,
                message_id=message_id,
                now=now,
                payload=payload,
            )
        )
    )
