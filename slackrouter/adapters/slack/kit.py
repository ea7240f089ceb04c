"""Small pure pieces of Block Kit shared by the builders, each keeping within Slack's limits.

The limits, from Slack's Block Kit reference: 50 blocks in a message and 100 in a modal or the
App Home; 3,000 characters in a section's text, 2,000 in a context element's, 2,000 in an input's
label and hint, 150 in a header and a placeholder; 75 in a button's or an option's text, 150 in
an option's value, 2,000 in a button's value; 100 options in a select; 10 elements in a context,
25 in an actions block; 24 characters in a modal's title and its submit and close buttons; 3,000
in a view's `private_metadata`.

Text that people wrote (visitors, admins naming things) goes into `plain_text` objects, or is
escaped with `escape_visitor_text` before it joins our own `mrkdwn` markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from slackrouter.adapters.slack.text import escape_visitor_text

Block = dict[str, Any]
Blocks = list[Block]

VIEW_BLOCKS = 100
SECTION_TEXT = 3000
CONTEXT_TEXT = 2000
LABEL_TEXT = 2000
HEADER_TEXT = 150
PLACEHOLDER_TEXT = 150
BUTTON_TEXT = 75
OPTION_TEXT = 75
OPTION_VALUE = 150
CONTEXT_ELEMENTS = 10
ACTIONS_ELEMENTS = 25
MODAL_TITLE = 24
PRIVATE_METADATA = 3000


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, ending in "…" when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def esc(text: str) -> str:
    """Someone's words, safe inside our mrkdwn: `&`, `<` and `>` escaped."""
    return escape_visitor_text(text)


def clip_markup(text: str, limit: int) -> str:
    """Our mrkdwn cut to `limit` without splitting an entity or a `<…>` token."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    for opener, closer in (("<", ">"), ("&", ";")):
        start = cut.rfind(opener)
        if start != -1 and cut.find(closer, start) == -1:
            cut = cut[:start]
    return cut + "…"


def listing(items: Sequence[str], limit: int, *, empty: str = "nobody") -> str:
    """Items joined by commas within `limit` characters; those that do not fit are counted,
    honestly: "a, b, c and 12 more". Items are whole tokens (mentions, escaped names)."""
    if not items:
        return empty
    shown: list[str] = []
    length = 0
    for position, item in enumerate(items):
        rest = len(items) - position - 1
        tail = len(f" and {rest} more") if rest else 0
        added = len(item) + (2 if shown else 0)
        if length + added + tail > limit:
            more = len(items) - len(shown)
            return (", ".join(shown) + f" and {more} more") if shown else f"{more} in all"
        shown.append(item)
        length += added
    return ", ".join(shown)


def plain(text: str, limit: int = SECTION_TEXT) -> dict[str, Any]:
    return {"type": "plain_text", "text": clip(text, limit) or " ", "emoji": True}


def mrkdwn(text: str, limit: int = SECTION_TEXT) -> dict[str, Any]:
    """Our markup (already escaped where it quotes people), never auto-linked."""
    return {"type": "mrkdwn", "text": clip_markup(text, limit) or " ", "verbatim": True}


def section(text: str, *, accessory: Block | None = None, block_id: str | None = None) -> Block:
    block: Block = {"type": "section", "text": mrkdwn(text)}
    if accessory is not None:
        block["accessory"] = accessory
    if block_id is not None:
        block["block_id"] = block_id
    return block


def context(*texts: str) -> Block:
    return {
        "type": "context",
        "elements": [mrkdwn(t, CONTEXT_TEXT) for t in texts[:CONTEXT_ELEMENTS]],
    }


def header(text: str) -> Block:
    return {"type": "header", "text": plain(text, HEADER_TEXT)}


def divider() -> Block:
    return {"type": "divider"}


def button(
    text: str,
    action_id: str,
    *,
    value: str | None = None,
    style: str | None = None,
    url: str | None = None,
    confirm: Block | None = None,
) -> Block:
    element: Block = {"type": "button", "text": plain(text, BUTTON_TEXT), "action_id": action_id}
    for key, field in (("value", value), ("style", style), ("url", url), ("confirm", confirm)):
        if field is not None:
            element[key] = field
    return element


def confirm(title: str, text: str, yes: str, *, danger: bool = False) -> Block:
    dialog: Block = {
        "title": plain(title, 100),
        "text": plain(text, 300),
        "confirm": plain(yes, 30),
        "deny": plain("Cancel", 30),
    }
    if danger:
        dialog["style"] = "danger"
    return dialog


def actions(*elements: Block, block_id: str | None = None) -> Block:
    block: Block = {"type": "actions", "elements": list(elements[:ACTIONS_ELEMENTS])}
    if block_id is not None:
        block["block_id"] = block_id
    return block


def option(text: str, value: str) -> Block:
    return {"text": plain(text, OPTION_TEXT), "value": value[:OPTION_VALUE]}


def modal(
    title: str,
    blocks: Blocks,
    *,
    callback_id: str,
    submit: str | None = None,
    private_metadata: str = "",
) -> Block:
    view: Block = {
        "type": "modal",
        "callback_id": callback_id,
        "title": plain(title, MODAL_TITLE),
        "close": plain("Close" if submit is None else "Cancel", MODAL_TITLE),
        "blocks": blocks[:VIEW_BLOCKS],
        "private_metadata": private_metadata[:PRIVATE_METADATA],
    }
    if submit is not None:
        view["submit"] = plain(submit, MODAL_TITLE)
    return view


def page_of(total: int, page: int, size: int) -> tuple[int, int, int]:
    """(page, first index, last index + 1) of a page within `total` items, `page` clamped."""
    pages = max(1, -(-total // size))
    page = min(max(page, 0), pages - 1)
    return page, page * size, min(total, (page + 1) * size)
