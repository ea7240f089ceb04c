"""Turn cached rep rows into the routing core's availability snapshot."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from slackrouter.adapters.db.models import Rep
from slackrouter.adapters.db.repository import RepRow
from slackrouter.routing import Presence, RepState

_PRESENCES = frozenset(p.value for p in Presence)


def rep_state(rep: Rep | RepRow, *, now: datetime, max_age: timedelta) -> RepState:
    """A rep's state for routing; presence older than `max_age` counts as unknown (unavailable)."""
    fresh = rep.presence_checked_at is not None and now - rep.presence_checked_at <= max_age
    known = fresh and rep.presence in _PRESENCES
    presence = Presence(rep.presence) if known else Presence.UNKNOWN
    return RepState(
        user_id=rep.user_id,
        opted_in=rep.opted_in,
        presence=presence,
        dnd=rep.dnd,
        deleted=rep.deleted,
        is_bot=rep.is_bot,
        is_excluded=rep.is_guest,
        last_assigned_at=rep.last_assigned_at,
    )


def describe(reps: Iterable[Rep | RepRow], *, now: datetime) -> str:
    """For the log: which cached values a decision used, and how old they were."""
    parts = []
    for rep in reps:
        age = (
            f"{(now - rep.presence_checked_at).total_seconds():.0f}s"
            if rep.presence_checked_at
            else "never"
        )
        flags = ("" if rep.opted_in else ",opted-out") + (",dnd" if rep.dnd else "")
        parts.append(f"{rep.user_id}={rep.presence}@{age}{flags}")
    return " ".join(parts) or "no reps"
