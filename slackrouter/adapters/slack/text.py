"""Text crossing between visitors and Slack, in both directions. Pure functions.

Visitor → Slack. Slack reads `&`, `<` and `>` as control characters: `<!channel>`, `<@U…>`,
`<#C…>` and `<url|label>` are markup only when written with raw angle brackets, and Slack asks
apps to send exactly these three characters as `&amp;`, `&lt;`, `&gt;` ("Formatting text for
app surfaces", "Escaping text"). It decodes the entities for display without parsing the result
again, so escaped visitor text shows the characters and pings nobody.

Bare words are a separate matter ("Automatic parsing" in the same guide): Slack turns a typed
`@here`, `@channel`, `@everyone` or `#general` into a mention only where automatic parsing is
on, which is (a) a message's top-level `text` sent with `link_names=1`, and (b) a `mrkdwn`
text object whose `verbatim` is false, which is its default. It is off for top-level `text`
without `link_names` (the guide: "as long as you exclude the link_names argument ... this will
be disabled by default"), and `plain_text` objects do no such processing. The guide itself warns
that with automatic parsing on, user text containing `@everyone` can notify the whole
workspace. So `escape_visitor_text` changes nothing but the three characters; visitor text is
safe where it goes: `plain_text` objects (`plain_text_object`), or top-level `text` with
`mrkdwn=False` and no `link_names`. Never place it in a `mrkdwn` object without
`verbatim: true`.

Slack → visitor. A rep's reply arrives in Slack's markup with the three characters escaped;
`slack_to_visitor_text` turns it into the plain text a visitor should read. The result is plain
text, not HTML: the widget must still escape it for its own page.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime

SECTION_TEXT_MAX = 3000
"""Slack's limit for a text object's `text` (a section block's text), in characters."""

UNKNOWN_USER = "@someone"
"""How a mention of a user whose name is unknown reads to a visitor: never the bare id."""

_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_ENTITIES = {"&amp;": "&", "&lt;": "<", "&gt;": ">"}
_ESCAPED_CHARS = re.compile(r"[&<>]")
# A markup token, or one of the three entities outside tokens; matched in one left-to-right pass
# so that each entity is decoded exactly once and decoded text is never read as markup.
_TOKEN_OR_ENTITY = re.compile(r"<([^<>]*)>|&(?:amp|lt|gt);")
_USER_MENTION = re.compile(r"<@([^|<>]+)(?:\|[^<>]*)?>")
_SCHEME = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*://|mailto:)")


def escape_visitor_text(text: str) -> str:
    """Escape `&`, `<` and `>` (and nothing else) so that visitor text is never Slack markup."""
    return _ESCAPED_CHARS.sub(lambda m: _ESCAPES[m[0]], text)


def plain_text_object(text: str, max_len: int = SECTION_TEXT_MAX) -> dict[str, str]:
    """A Block Kit `plain_text` object showing raw `text`, escaped, within `max_len`.

    Pass unescaped text: this escapes it. The limit applies to the escaped text as sent, and
    counts UTF-16 code units, which is never fewer than characters. Longer text is cut, never
    inside an entity, and ends with "…". Slack rejects empty text objects, so empty `text`
    raises ValueError.
    """
    if not text:
        raise ValueError("Slack text objects need at least one character")
    if max_len < 1:
        raise ValueError("max_len must be at least 1")
    escaped = escape_visitor_text(text)
    if _slack_len(escaped) > max_len:
        budget = max_len - 1  # room for the ellipsis
        kept: list[str] = []
        for char in text:
            piece = _ESCAPES.get(char, char)
            budget -= _slack_len(piece)
            if budget < 0:
                break
            kept.append(piece)
        escaped = "".join(kept) + "…"
    return {"type": "plain_text", "text": escaped}


def user_ids_in(text: str) -> set[str]:
    """User ids mentioned in Slack markup (`<@U…>` with or without a label): the names to look up
    before `slack_to_visitor_text`."""
    return set(_USER_MENTION.findall(text))


def slack_to_visitor_text(text: str, names: Mapping[str, str]) -> str:
    """A rep's Slack message as plain text for the visitor.

    `<@U1>` becomes `@` + names["U1"] (`@someone` when unknown), `<@U1|bob>` `@bob`;
    `<#C1|general>` `#general`, `<#C1>` `#channel`; `<!here>`, `<!channel>`, `<!everyone>`
    `@here`, `@channel`, `@everyone`; `<!subteam^S1|@sales>` `@sales` (`@team` unlabelled);
    `<!date^…|fallback>` the fallback (the UTC time when there is none); `<url|label>`
    `label (url)`, or just the label when it only repeats the address; `<url>` the url,
    `mailto:` dropped. Entities are decoded once, after the markup is read. Mrkdwn styling such
    as `*bold*` is left as typed.
    """

    def replace(match: re.Match[str]) -> str:
        inner = match[1]
        if inner is None:
            return _ENTITIES[match[0]]
        return _token(inner, names)

    return _TOKEN_OR_ENTITY.sub(replace, text)


def _token(inner: str, names: Mapping[str, str]) -> str:
    """Plain text for the markup `<inner>`; `inner` still has Slack's entities in it."""
    target, _, label = inner.partition("|")
    label = _unescape(label)
    if target.startswith("@"):
        name = label or names.get(target[1:])
        return f"@{name}" if name else UNKNOWN_USER
    if target.startswith("#"):
        return "#" + (label or "channel")
    if target.startswith("!"):
        command, _, argument = target[1:].partition("^")
        if command in ("here", "channel", "everyone"):
            return "@" + command
        if command == "subteam":
            return "@" + (label.removeprefix("@") or "team")
        if command == "date":
            return label or _date_fallback(argument)
        return label or "@" + command
    url = _unescape(target)
    address = url.removeprefix("mailto:")
    if label and label not in (url, address, _SCHEME.sub("", url).rstrip("/")):
        return f"{label} ({address})"
    return label or address


def _date_fallback(argument: str) -> str:
    timestamp = argument.partition("^")[0]
    try:
        return datetime.fromtimestamp(int(timestamp), UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (ValueError, OverflowError, OSError):
        return ""


def _unescape(text: str) -> str:
    return re.sub(r"&(?:amp|lt|gt);", lambda m: _ENTITIES[m[0]], text)


def _slack_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2
