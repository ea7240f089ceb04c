"""Block Kit for working a chat beyond its first message: the Transfer modal. Pure."""

from __future__ import annotations

import json

from slackrouter.adapters.slack.kit import PLACEHOLDER_TEXT, Block, context, esc, modal, plain


def transfer_modal(
    *, conversation_id: str, channel: str, visitor_name: str | None, chatflow_name: str
) -> Block:
    """Hand a chat to a person, or offer it to a team (user group or slackrouter team);
    `channel` is where the Transfer button was, to answer there."""
    who = esc(visitor_name or "a visitor")
    blocks = [
        context(f"The chat with *{who}* on *{esc(chatflow_name)}*."),
        {
            "type": "input",
            "block_id": "to_user",
            "optional": True,
            "label": plain("To a person"),
            "element": {"type": "users_select", "action_id": "to_user"},
        },
        {
            "type": "input",
            "block_id": "to_team",
            "optional": True,
            "label": plain("Or to a team"),
            "hint": plain("Its available members get the chat, by the chatflow's assignment."),
            "element": {
                "type": "external_select",
                "action_id": "transfer_team",
                "min_query_length": 0,
                "placeholder": plain("User groups and slackrouter teams", PLACEHOLDER_TEXT),
            },
        },
    ]
    return modal(
        "Transfer chat",
        blocks,
        callback_id="chat_transfer",
        submit="Transfer",
        private_metadata=json.dumps({"id": conversation_id, "channel": channel}),
    )
