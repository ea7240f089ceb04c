"""Block Kit for `/chatrouting`: help and status answers, the chatflow and team modals. Pure.

Block ids of the edit modals' inputs are the names of the settings they edit, so that the
service's validation errors (keyed by setting) land next to their input.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from slackrouter.adapters.slack.kit import (
    LABEL_TEXT,
    PLACEHOLDER_TEXT,
    SECTION_TEXT,
    Block,
    Blocks,
    actions,
    button,
    clip,
    confirm,
    context,
    divider,
    esc,
    listing,
    modal,
    option,
    page_of,
    plain,
    section,
)
from slackrouter.routing import Unavailable

if TYPE_CHECKING:  # the read models these builders render; no import at run time
    from slackrouter.adapters.db.models import Team
    from slackrouter.services.chatflow_admin import ChatflowSettings
    from slackrouter.services.overview import ChatflowLine, RouteStatus

PAGE_SIZE = 30  # chatflows or teams per page of a list modal
STATUS_CHATFLOWS = 40  # chatflows in a status answer (a message holds 50 blocks)
ROUTE_CHARS = 1200  # of a summary line, for the people and teams on the route
MAX_MESSAGE_INPUT = 3000

REASONS: dict[Unavailable, str] = {
    Unavailable.DEACTIVATED: "deactivated",
    Unavailable.BOT: "bots",
    Unavailable.EXCLUDED: "guests",
    Unavailable.ALREADY_OFFERED: "already offered",
    Unavailable.OPTED_OUT: "opted out",
    Unavailable.DND: "in Do Not Disturb",
    Unavailable.AWAY: "away in Slack",
    Unavailable.UNKNOWN_PRESENCE: "presence not known yet",
    Unavailable.OUTSIDE_HOURS: "outside business hours",
}

HELP = """*`/chatrouting`* puts your website's chats in Slack.
• `/chatrouting available`: take chats (while Slack shows you active and not in Do Not Disturb)
• `/chatrouting away`: stop taking chats
• `/chatrouting status`: who can take each chatflow's chats now, and why the others cannot
• `/chatrouting help`: this help
Chats arrive in your DMs (or a team channel) with *Claim*, *Transfer* and *Close* buttons: \
reply in the chat's thread to answer the visitor.
Admins: `/chatrouting` lists and edits chatflows, `/chatrouting teams` manages slackrouter teams."""


def help_blocks(*, note: str | None = None) -> Blocks:
    blocks = [section(note)] if note else []
    return [*blocks, section(HELP)]


def team_label(ref: str, team_names: Mapping[str, str]) -> str:
    """A route team in our mrkdwn: a user group as Slack shows it, a slackrouter team by name."""
    if ref.startswith("S"):
        return f"<!subteam^{ref}>"
    return esc(team_names.get(ref, "a deleted team"))


def routing_summary(settings: ChatflowSettings, team_names: Mapping[str, str]) -> str:
    """A chatflow's routing in one line of mrkdwn."""
    route = [f"<@{u}>" for u in settings.route_users]
    route += [team_label(ref, team_names) for ref in settings.route_teams]
    parts = [f"to {listing(route, ROUTE_CHARS)}"]
    parts.append(f"in <#{settings.channel_id}>" if settings.channel_id else "in DMs")
    parts.append("round robin" if settings.assignment == "round_robin" else "all at once")
    parts.append(
        f"fallback <@{settings.offline_fallback}>"
        if settings.offline_fallback
        else "no offline fallback"
    )
    if settings.rotate_to_owner:
        parts.append("owners first")
    if settings.note_mode == "reverse":
        parts.append("notes unless sent")
    return " · ".join(parts)


def status_blocks(routes: Sequence[RouteStatus]) -> Blocks:
    """Who of each chatflow's route is available now, and why the others are not."""
    if not routes:
        return [section("There are no chatflows yet. An admin creates them with `/chatrouting`.")]
    blocks: Blocks = [section("*Who can take chats now*")]
    for route in routes[:STATUS_CHATFLOWS]:
        by_reason: dict[Unavailable, list[str]] = {}
        for user_id, why in route.unavailable:
            by_reason.setdefault(why, []).append(f"<@{user_id}>")
        budget = (SECTION_TEXT - 400) // (len(by_reason) + 1)
        available = listing([f"<@{u}>" for u in route.available], budget)
        lines = [f"*{esc(route.name)}*: available: {available}"]
        lines += [f"{REASONS[why]}: {listing(people, budget)}" for why, people in by_reason.items()]
        if not route.available and not route.unavailable:
            lines.append("nobody is on its route")
        blocks.append(section("\n".join(lines)))
    if len(routes) > STATUS_CHATFLOWS:
        more = len(routes) - STATUS_CHATFLOWS
        blocks.append(context(f"and {more} more chatflows, not shown here"))
    return blocks


def _listed_rows(
    title: str, rows: Sequence[Block], total: int, page: int, action_id: str
) -> Blocks:
    page, first, last = page_of(total, page, PAGE_SIZE)
    blocks = list(rows)
    if total > PAGE_SIZE:
        pager = []
        if page > 0:
            pager.append(button("Previous", action_id, value=str(page - 1)))
        if last < total:
            pager.append(button("Next", action_id, value=str(page + 1)))
        blocks.append(context(f"{title} {first + 1} to {last} of {total}"))
        blocks.append(actions(*pager, block_id="pager"))
    return blocks


def chatflows_modal(
    lines: Sequence[ChatflowLine], team_names: Mapping[str, str], *, page: int = 0
) -> Block:
    """The list modal: each chatflow (`lines` has all of them) with its routing in one line
    and an Edit button, a page at a time."""
    page, first, last = page_of(len(lines), page, PAGE_SIZE)
    blocks: Blocks = [
        section(
            f"*{len(lines)} chatflows.* Each is one chat on your website, with its own routing.",
            accessory=button("New chatflow", "chatflow_new", style="primary"),
        ),
        actions(button("Teams", "teams_open"), block_id="more"),
        divider(),
    ]
    rows = [
        section(
            f"*{esc(line.settings.name)}*\n{routing_summary(line.settings, team_names)}",
            accessory=button("Edit", "chatflow_edit", value=line.chatflow_id),
        )
        for line in lines[first:last]
    ]
    if not lines:
        rows = [section("No chatflows yet: *New chatflow* makes the first.")]
    blocks += _listed_rows("Chatflows", rows, len(lines), page, "chatflows_page")
    return modal("Chatflows", blocks, callback_id="chatflows", private_metadata=str(page))


def _text_input(
    block_id: str,
    label: str,
    value: str,
    *,
    max_length: int,
    multiline: bool = False,
    hint: str | None = None,
) -> Block:
    element: Block = {
        "type": "plain_text_input",
        "action_id": block_id,
        "max_length": max_length,
        "multiline": multiline,
    }
    if value:
        element["initial_value"] = value[:max_length]
    return _input(block_id, label, element, hint=hint)


def _input(
    block_id: str, label: str, element: Block, *, optional: bool = False, hint: str | None = None
) -> Block:
    block: Block = {
        "type": "input",
        "block_id": block_id,
        "label": plain(label, LABEL_TEXT),
        "element": element,
        "optional": optional,
    }
    if hint:
        block["hint"] = plain(hint, LABEL_TEXT)
    return block


ASSIGNMENT_OPTIONS = {
    "all": ("Offer it to everyone available; the first to answer has it", "all"),
    "round_robin": ("Give it to one available rep, taking turns", "round_robin"),
}
NOTE_MODE_OPTIONS = {
    "prefix": ("Thread replies go to the visitor; notes start with the prefix", "prefix"),
    "reverse": ("Thread messages are notes; answer with “Send to visitor”", "reverse"),
}
OWNER_OPTION = option("If a visitor is owned, route their incoming chats to the owner", "owner")


def chatflow_modal(
    chatflow_id: str | None,
    settings: ChatflowSettings,
    team_names: Mapping[str, str],
    *,
    public_key: str | None = None,
    signing_secret: str | None = None,
    list_view: str | None = None,
    page: int = 0,
) -> Block:
    """Create (`chatflow_id` None) or edit a chatflow, in the seed's own terms. `list_view`
    is the list modal it was opened from (showing `page`), refreshed after a save."""
    initial_teams = [option(team_label_plain(ref, team_names), ref) for ref in settings.route_teams]
    teams: Block = {
        "type": "multi_external_select",
        "action_id": "route_teams",
        "min_query_length": 0,
        "placeholder": plain("User groups and slackrouter teams", PLACEHOLDER_TEXT),
    }
    if initial_teams:
        teams["initial_options"] = initial_teams[:100]
    users: Block = {"type": "multi_users_select", "action_id": "route_users"}
    if settings.route_users:
        users["initial_users"] = list(settings.route_users)
    channel: Block = {
        "type": "conversations_select",
        "action_id": "channel_id",
        "filter": {"include": ["public", "private"], "exclude_bot_users": True},
    }
    if settings.channel_id:
        channel["initial_conversation"] = settings.channel_id
    fallback: Block = {"type": "users_select", "action_id": "offline_fallback"}
    if settings.offline_fallback:
        fallback["initial_user"] = settings.offline_fallback
    owner: Block = {"type": "checkboxes", "action_id": "rotate_to_owner", "options": [OWNER_OPTION]}
    if settings.rotate_to_owner:
        owner["initial_options"] = [OWNER_OPTION]
    blocks: Blocks = [
        _text_input("name", "Name", settings.name, max_length=200),
        _input("route_users", "Route incoming chats to: people", users, optional=True),
        _input(
            "route_teams",
            "…and teams",
            teams,
            optional=True,
            hint="Slack user groups (paid plans) or teams made in slackrouter.",
        ),
        _input(
            "channel_id",
            "Post chats in a channel",
            channel,
            optional=True,
            hint="Leave empty to send each chat to the reps' DMs. Invite the app to the channel.",
        ),
        _input(
            "offline_fallback",
            "Offline fallback",
            fallback,
            optional=True,
            hint="Emailed the chat when nobody on the route is available.",
        ),
        _input("rotate_to_owner", "Contact owners", owner, optional=True),
        _input(
            "assignment",
            "Assignment",
            _radio("assignment", ASSIGNMENT_OPTIONS, settings.assignment),
        ),
        _input(
            "escalation_seconds",
            "Offer it to the next reps after (seconds)",
            {
                "type": "number_input",
                "action_id": "escalation_seconds",
                "is_decimal_allowed": False,
                "min_value": "1",
                "max_value": "86400",
                "initial_value": str(settings.escalation_seconds),
            },
        ),
        _input(
            "note_mode",
            "Internal notes",
            _radio("note_mode", NOTE_MODE_OPTIONS, settings.note_mode),
        ),
        _text_input(
            "note_prefix",
            "Note prefix",
            settings.note_prefix,
            max_length=20,
            hint="A thread reply starting with this stays in Slack.",
        ),
        _text_input(
            "welcome_message",
            "Welcome message",
            settings.welcome_message,
            max_length=MAX_MESSAGE_INPUT,
            multiline=True,
        ),
        _text_input(
            "away_message",
            "Away message",
            settings.away_message,
            max_length=MAX_MESSAGE_INPUT,
            multiline=True,
            hint="Shown when nobody can answer; the visitor may leave an email address.",
        ),
        divider(),
    ]
    if chatflow_id is None or public_key is None or signing_secret is None:
        blocks.append(context("A public key and a signing secret are made when you save."))
    else:
        blocks += [
            section(f"*Public key* (for the widget in browsers)\n`{esc(public_key)}`"),
            section(
                "*Signing secret* (for your server's calls; keep it secret)\n"
                f"`{esc(signing_secret)}`",
                accessory=button(
                    "Rotate secret",
                    "chatflow_rotate_secret",
                    value=chatflow_id,
                    confirm=confirm(
                        "Rotate the secret?",
                        "The current secret stops working at once: update your server with the "
                        "new one.",
                        "Rotate",
                        danger=True,
                    ),
                ),
                block_id="secret",
            ),
        ]
    title = "New chatflow" if chatflow_id is None else "Edit chatflow"
    return modal(
        title,
        blocks,
        callback_id="chatflow_edit",
        submit="Save",
        private_metadata=json.dumps({"id": chatflow_id, "list": list_view, "page": page}),
    )


def team_label_plain(ref: str, team_names: Mapping[str, str]) -> str:
    """A route team as plain text (an option's label)."""
    return team_names.get(ref, ref if ref.startswith("S") else "a deleted team")


def _radio(action_id: str, choices: Mapping[str, tuple[str, str]], current: str) -> Block:
    options = [option(text, value) for text, value in choices.values()]
    element: Block = {"type": "radio_buttons", "action_id": action_id, "options": options}
    if current in choices:
        element["initial_option"] = option(*choices[current])
    return element


def teams_modal(teams: Sequence[Team], *, page: int = 0) -> Block:
    """slackrouter teams (`teams` has all of them), a page at a time."""
    page, first, last = page_of(len(teams), page, PAGE_SIZE)
    blocks: Blocks = [
        section(
            f"*{len(teams)} slackrouter teams.* Route chats to a team when your Slack plan has "
            "no user groups, or to group reps differently.",
            accessory=button("New team", "team_new", style="primary"),
        ),
        divider(),
    ]
    rows = [
        section(
            f"*{esc(team.name)}* · {len(team.members)} members: "
            + listing([f"<@{u}>" for u in team.members], 1500),
            accessory=button("Edit", "team_edit", value=team.id),
        )
        for team in teams[first:last]
    ]
    if not teams:
        rows = [section("No teams yet.")]
    blocks += _listed_rows("Teams", rows, len(teams), page, "teams_page")
    return modal("Teams", blocks, callback_id="teams", private_metadata=str(page))


def team_modal(team: Team | None, *, list_view: str | None = None, page: int = 0) -> Block:
    """Create (`team` None) or edit a slackrouter team; `list_view` as in `chatflow_modal`."""
    members: Block = {"type": "multi_users_select", "action_id": "members"}
    if team is not None and team.members:
        members["initial_users"] = list(team.members)
    blocks: Blocks = [
        _text_input("name", "Name", team.name if team is not None else "", max_length=200),
        _input("members", "Members", members, optional=True),
    ]
    if team is not None:
        blocks.append(
            actions(
                button(
                    "Delete team",
                    "team_delete",
                    value=team.id,
                    style="danger",
                    confirm=confirm(
                        "Delete this team?",
                        "It is taken off every chatflow's route.",
                        "Delete",
                        danger=True,
                    ),
                ),
                block_id="danger",
            )
        )
    return modal(
        "New team" if team is None else "Edit team",
        blocks,
        callback_id="team_edit",
        submit="Save",
        private_metadata=json.dumps(
            {"id": team.id if team is not None else None, "list": list_view, "page": page}
        ),
    )


def notice_modal(text: str) -> Block:
    """A modal that only says something (an answer to a click inside another modal)."""
    return modal("slackrouter", [section(clip(text, SECTION_TEXT))], callback_id="notice")
