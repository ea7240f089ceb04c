"""The routing decision, pure: plain data in, a `Decision` out; no Slack, database or clock."""

from slackrouter.routing.hours import WeeklyHours
from slackrouter.routing.model import (
    AssignmentMode,
    ChatflowRouting,
    Contact,
    Decision,
    Outcome,
    Presence,
    RepState,
    RoutingRequest,
    Rule,
    Unavailable,
)
from slackrouter.routing.policy import availability, decide

__all__ = [
    "AssignmentMode",
    "ChatflowRouting",
    "Contact",
    "Decision",
    "Outcome",
    "Presence",
    "RepState",
    "RoutingRequest",
    "Rule",
    "Unavailable",
    "WeeklyHours",
    "availability",
    "decide",
]
