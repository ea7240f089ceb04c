"""Block Kit for the App Home tab: a rep's availability and chats; for admins, the routing of
every chatflow, who is available now and the missed chats. Pure."""

from __future__ import annotations

from typing import TYPE_CHECKING

from slackrouter.adapters.slack.admin_blocks import routing_summary
from slackrouter.adapters.slack.kit import (
    VIEW_BLOCKS,
    Block,
    Blocks,
    actions,
    button,
    context,
    divider,
    esc,
    header,
    listing,
    section,
)

if TYPE_CHECKING:  # the read models rendered here; no import at run time
    from slackrouter.services.overview import AdminOverview, ChatSummary, HomeOverview

STATES = {
    "yours": "yours",
    "waiting": "waiting for someone to claim it",
    "missed": "nobody answered in time",
    "emailed": "emailed to you: nobody was available",
}


def _availability(data: HomeOverview) -> Blocks:
    if data.opted_in:
        text = (
            "*You're taking chats.* They come to you while Slack shows you active and you're "
            "not in Do Not Disturb."
        )
        toggle = button("Stop taking chats", "home_availability", value="away")
    else:
        text = "*You're not taking chats.* Nobody routes chats to you until you take them again."
        toggle = button("Take chats", "home_availability", value="available", style="primary")
    presence = {"active": "active", "away": "away"}.get(data.presence, "not known yet")
    dnd = " · in Do Not Disturb" if data.dnd else ""
    return [
        section(text, accessory=toggle, block_id="availability"),
        context(f"Slack presence: {presence}{dnd}"),
    ]


def _chat(chat: ChatSummary) -> Block:
    who = esc(chat.visitor_name or "A visitor")
    link = f" · <{chat.link}|Open the thread>" if chat.link else ""
    return section(f"*{who}* · {esc(chat.chatflow_name)} · {STATES[chat.state]}{link}")


def _chats(title: str, chats: tuple[ChatSummary, ...], total: int, empty: str) -> Blocks:
    blocks: Blocks = [section(f"*{title}* ({total})")]
    blocks += [_chat(chat) for chat in chats]
    if total > len(chats):
        blocks.append(context(f"and {total - len(chats)} more, older"))
    if not chats:
        blocks.append(context(empty))
    return blocks


def _admin(admin: AdminOverview) -> Blocks:
    blocks: Blocks = [
        divider(),
        header("Routing"),
        actions(
            button("New chatflow", "chatflow_new", style="primary"),
            button("All chatflows", "chatflows_open"),
            button("Teams", "teams_open"),
            block_id="admin",
        ),
    ]
    for line in admin.chatflows:
        blocks.append(
            section(
                f"*{esc(line.settings.name)}*\n{routing_summary(line.settings, admin.team_names)}",
                accessory=button("Edit", "chatflow_edit", value=line.chatflow_id),
            )
        )
    if admin.chatflow_total > len(admin.chatflows):
        more = admin.chatflow_total - len(admin.chatflows)
        blocks.append(context(f"and {more} more chatflows: *All chatflows* lists them"))
    if not admin.chatflows:
        blocks.append(context("No chatflows yet: *New chatflow* makes the first."))
    available = listing([f"<@{u}>" for u in admin.available], 2500)
    blocks.append(
        section(
            f"*Available now* ({len(admin.available)} of {admin.routed_total} on a route): "
            f"{available}"
        )
    )
    blocks.append(section(f"*Missed chats, every chatflow* ({admin.missed_total})"))
    for chat in admin.missed:
        blocks.append(_chat(chat))
        if chat.explanation:
            blocks.append(context(esc(chat.explanation)))
    if admin.missed_total > len(admin.missed):
        blocks.append(context(f"and {admin.missed_total - len(admin.missed)} more, older"))
    if admin.failed_total:
        blocks.append(section(f"*Deliveries that failed* ({admin.failed_total})"))
        for failed in admin.failed:
            blocks.append(
                section(
                    f"Could not {failed.what}: `{esc(failed.error[:300])}`",
                    accessory=button("Retry", "delivery_retry", value=str(failed.item_id)),
                )
            )
        if admin.failed_total > len(admin.failed):
            blocks.append(context(f"and {admin.failed_total - len(admin.failed)} more, older"))
    return blocks


def home_view(data: HomeOverview) -> Block:
    blocks: Blocks = [header("Your chats"), *_availability(data), divider()]
    blocks += _chats("Open chats", data.chats, data.chats_total, "No open chats right now.")
    blocks += _chats("Missed chats", data.missed, data.missed_total, "None missed.")
    if data.admin is not None:
        blocks += _admin(data.admin)
    return {"type": "home", "callback_id": "home", "blocks": blocks[:VIEW_BLOCKS]}
