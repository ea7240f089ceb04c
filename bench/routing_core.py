"""The routing core alone, in this process: decisions per second of `slackrouter.routing.decide`
for a route of `reps` reps (route users and two overlapping teams) and `contacts` known visitors,
most of them owned, on a chatflow that rotates to owners and assigns round robin."""

from __future__ import annotations

import itertools
import random
import time
from datetime import UTC, datetime, timedelta

from slackrouter.routing import (
    AssignmentMode,
    ChatflowRouting,
    Contact,
    Presence,
    RepState,
    RoutingRequest,
    decide,
)

OWNED = 0.7  # share of contacts with an owner


def requests(reps: int, contacts: int, *, seed: int = 7) -> list[RoutingRequest]:
    """One routing request per contact, over one snapshot of the reps' availability."""
    rng = random.Random(seed)
    now = datetime(2025, 3, 4, 15, 0, tzinfo=UTC)
    users = [f"U{n:06d}" for n in range(reps)]
    states = {
        user: RepState(
            user_id=user,
            opted_in=rng.random() < 0.95,
            presence=rng.choices(list(Presence), weights=(6, 3, 1))[0],
            dnd=rng.random() < 0.1,
            deleted=rng.random() < 0.01,
            last_assigned_at=now - timedelta(seconds=rng.randrange(86_400))
            if rng.random() < 0.8
            else None,
        )
        for user in users
    }
    half, tenth = reps // 2, reps // 10
    chatflow = ChatflowRouting(
        route_users=tuple(users[:half]),
        route_teams=("tm_east", "tm_west"),
        team_members={
            "tm_east": tuple(users[half - tenth : half + 3 * tenth]),
            "tm_west": tuple(users[half + 2 * tenth :]),
        },
        assignment=AssignmentMode.ROUND_ROBIN,
        rotate_to_owner=True,
        offline_fallback=users[0],
    )
    return [
        RoutingRequest(
            chatflow=chatflow,
            reps=states,
            now=now,
            contact=Contact(owner=rng.choice(users) if rng.random() < OWNED else None),
        )
        for _ in range(contacts)
    ]


def decisions_per_second(batch: list[RoutingRequest], seconds: float) -> float:
    """Decide the requests in turn for about `seconds` of this process's CPU time; returns
    decisions per CPU second (CPU time, not wall time: the machine may be shared)."""
    done = 0
    start = time.process_time()
    deadline = start + seconds
    for request in itertools.cycle(batch):
        decide(request)
        done += 1
        if done % 100 == 0 and time.process_time() >= deadline:
            break
    return done / (time.process_time() - start)
