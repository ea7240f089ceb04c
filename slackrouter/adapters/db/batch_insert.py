"""A batch of visitor messages' new rows inserted on PostgreSQL in one statement.

The visitor message writer inserts a batch's conversations, messages, feed entries, Slack
threads, timers and outbox rows, and stamps the reps round robin gave its new chats. A
statement per table is a round trip each to the server, whatever the batch's size; at moderate
rates, where batches are small, the round trips are most of a batch's cost to both the worker
and PostgreSQL. Here they are one statement of data-modifying CTEs, each table's rows given as
one JSON array (`json_to_recordset`): the feed entries take their messages' ids, and the outbox
rows their messages' and new threads' ids, inside the statement. Rows go in in the order given
(numbered), as the ids the visitor's feed and each thread's posts are ordered by must be.

SQLite has no data-modifying CTEs, and its statements are calls in this process, not round
trips: the writer inserts there a statement per table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from slackrouter.adapters.db.models import UTCDateTime

MessageKey = tuple[str, str, str]  # (chatflow id, visitor id, client message id)

_INSERT_BATCH = text(
    """
WITH new_conversations AS (
    INSERT INTO conversations (
        id, team_id, chatflow_id, visitor_id, visitor_name, visitor_email, identity_verified,
        page_url, token, status, routing_outcome, routing, contact_id, offered, missed,
        created_at
    )
    SELECT c.id, c.team_id, c.chatflow_id, c.visitor_id, c.visitor_name, c.visitor_email,
        c.identity_verified, c.page_url, c.token, c.status, c.routing_outcome, c.routing,
        c.contact_id, c.offered, c.missed, :now
    FROM json_to_recordset(CAST(:conversations AS json)) AS c(
        id varchar, team_id varchar, chatflow_id varchar, visitor_id varchar,
        visitor_name varchar, visitor_email varchar, identity_verified boolean,
        page_url varchar, token varchar, status varchar, routing_outcome varchar,
        routing json, contact_id bigint, offered json, missed boolean, n bigint
    )
    ORDER BY c.n
), new_messages AS (
    INSERT INTO messages (
        team_id, conversation_id, author, text, chatflow_id, visitor_id, client_message_id,
        deleted, created_at
    )
    SELECT m.team_id, m.conversation_id, 'visitor', m.text, m.chatflow_id, m.visitor_id,
        m.client_message_id, false, :now
    FROM json_to_recordset(CAST(:messages AS json)) AS m(
        team_id varchar, conversation_id varchar, text text, chatflow_id varchar,
        visitor_id varchar, client_message_id varchar, n bigint
    )
    ORDER BY m.n
    RETURNING id, conversation_id, chatflow_id, visitor_id, client_message_id
), new_feed AS (
    INSERT INTO feed (conversation_id, kind, message_id, created_at)
    SELECT conversation_id, 'message', id, :now FROM new_messages ORDER BY id
), new_threads AS (
    INSERT INTO slack_threads (team_id, conversation_id, rep_user_id, channel_id, created_at)
    SELECT t.team_id, t.conversation_id, t.rep_user_id, t.channel_id, :now
    FROM json_to_recordset(CAST(:threads AS json)) AS t(
        team_id varchar, conversation_id varchar, rep_user_id varchar, channel_id varchar,
        n bigint
    )
    ORDER BY t.n
    RETURNING id, conversation_id, rep_user_id, channel_id
), new_timers AS (
    INSERT INTO timers (team_id, kind, conversation_id, due_at, status, created_at)
    SELECT r.team_id, r.kind, r.conversation_id, r.due_at, 'pending', :now
    FROM json_to_recordset(CAST(:timers AS json)) AS r(
        team_id varchar, kind varchar, conversation_id varchar, due_at timestamptz, n bigint
    )
    ORDER BY r.n
), new_posts AS (
    INSERT INTO outbox (
        team_id, kind, conversation_id, thread_id, message_id, status, attempts,
        next_attempt_at, payload, created_at
    )
    SELECT p.team_id, p.kind, p.conversation_id, coalesce(p.thread_id, t.id), m.id,
        'pending', 0, p.next_attempt_at, p.payload, :now
    FROM json_to_recordset(CAST(:posts AS json)) AS p(
        team_id varchar, kind varchar, conversation_id varchar, thread_id bigint,
        rep_user_id varchar, channel_id varchar, chatflow_id varchar, visitor_id varchar,
        client_message_id varchar, payload json, next_attempt_at timestamptz, n bigint
    )
    JOIN new_messages AS m
        ON m.chatflow_id = p.chatflow_id
        AND m.visitor_id = p.visitor_id
        AND m.client_message_id = p.client_message_id
    LEFT JOIN new_threads AS t
        ON p.thread_id IS NULL
        AND t.conversation_id = p.conversation_id
        AND t.rep_user_id IS NOT DISTINCT FROM p.rep_user_id
        AND t.channel_id IS NOT DISTINCT FROM p.channel_id
    ORDER BY p.n
), stamped_reps AS (
    UPDATE reps SET last_assigned_at = s.stamp
    FROM json_to_recordset(CAST(:stamps AS json)) AS s(
        team_id varchar, user_id varchar, stamp timestamptz, n bigint
    )
    WHERE reps.team_id = s.team_id AND reps.user_id = s.user_id
)
SELECT id, chatflow_id, visitor_id, client_message_id FROM new_messages
"""
).bindparams(bindparam("now", type_=UTCDateTime))


async def insert_batch(
    session: AsyncSession,
    *,
    now: datetime,
    conversations: list[dict[str, Any]],
    messages: list[dict[str, Any]],
    threads: list[dict[str, Any]],
    timers: list[dict[str, Any]],
    posts: list[dict[str, Any]],
    stamps: Mapping[tuple[str, str], datetime],
) -> dict[MessageKey, int]:
    """Insert the rows (each table's as its columns, created at `now`) and write round robin's
    `stamps` ((team, rep): when last given a chat); returns the messages' ids by key. A post
    names its thread by `thread_id`, or, for a thread of this batch, by its conversation, rep
    and channel; its message by chatflow, visitor and client id; and when it is due
    (`next_attempt_at`)."""
    rows = await session.execute(
        _INSERT_BATCH,
        {
            "now": now,
            "conversations": _json(conversations),
            "messages": _json(messages),
            "threads": _json(threads),
            "timers": _json(timers),
            "posts": _json(posts),
            "stamps": _json(
                [
                    {"team_id": team, "user_id": user, "stamp": at}
                    for (team, user), at in stamps.items()
                ]
            ),
        },
    )
    return {(chatflow, visitor, client): id_ for id_, chatflow, visitor, client in rows}


def _json(rows: list[dict[str, Any]]) -> str:
    """The rows as a JSON array, each numbered (`n`) in the order given."""
    numbered = [{**row, "n": n} for n, row in enumerate(rows)]
    return json.dumps(numbered, default=_iso, separators=(",", ":"))


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
