"""The email a rep gets for a chat nobody could take: who wrote, from which page, and what was said.

Everything the visitor typed is untrusted. Text bound for a header is cut to one line, and the
RFC 2047 opener `=?` is broken up: Python's header parser decodes encoded words in a value back
into raw characters, CR/LF included, which Python before 3.11.10 then writes out as they are (a
header injection) and later versions refuse to serialise (an email that can never be sent).
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

NAME_IN_HEADER_LIMIT = 64

# A deliberately plain address: dot-atom ASCII local part, a dotted domain with a letter TLD.
_ADDRESS = re.compile(
    r"[A-Za-z0-9_%+'-]+(?:\.[A-Za-z0-9_%+'-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
_MESSAGE_ID_PART = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")
_MUTED = "color:#616061"


@dataclass(frozen=True)
class TranscriptLine:
    """One message of the chat. `sent_at` is shown in its own time zone."""

    author: str
    text: str
    sent_at: datetime

    def __post_init__(self) -> None:
        if self.sent_at.utcoffset() is None:
            raise ValueError("TranscriptLine.sent_at must be timezone-aware")


def chat_email(
    *,
    to: str,
    sender: str,
    chatflow_name: str,
    visitor_name: str | None,
    visitor_email: str | None,
    identity_verified: bool,
    page_url: str | None,
    transcript: Sequence[TranscriptLine],
    reason: str,
    conversation_id: str,
    domain: str,
) -> EmailMessage:
    """The chat as a text and HTML email to `to`, replying to the visitor when their address works.

    The message is a pure function of its arguments: `Date` is the time of the last transcript
    line and `Message-ID` is `<conversation_id.chat@domain>`, so building it again (a retry, a
    resend) gives the same email, recognisable as such by mail clients.

    `to` and `sender` (which may carry a display name) are configuration, not visitor input: an
    unusable one is a `ValueError`, as are an empty transcript and a malformed id or domain.
    """
    if not transcript:
        raise ValueError("a chat email needs at least one transcript line")
    for what, part in (("conversation_id", conversation_id), ("domain", domain)):
        if not _MESSAGE_ID_PART.fullmatch(part):
            raise ValueError(f"{what} cannot go into a Message-ID: {part!r}")

    name = _one_line(visitor_name or "")
    email_given = _one_line(visitor_email or "")
    reply_to = _plain_address(email_given)
    flow = _one_line(chatflow_name)
    page = _one_line(page_url or "")
    view = _View(
        reason=_one_line(reason),
        name=name,
        email_given=email_given,
        reply_to=reply_to,
        identity_verified=identity_verified,
        page=page,
        flow=flow,
        lines=[
            (_timestamp(line.sent_at), _one_line(line.author), _body_text(line.text))
            for line in transcript
        ],
        conversation_id=conversation_id,
    )

    message = EmailMessage(policy=policy.SMTP)
    who = _shorten(_header_text(name or reply_to or "a visitor"), NAME_IN_HEADER_LIMIT)
    message["Subject"] = f"Chat from {who} on {_header_text(flow)} (no one was available)"
    message["From"] = configured_address(sender, "sender")
    message["To"] = configured_address(to, "to")
    if reply_to:
        header_name = _shorten(_header_text(name), NAME_IN_HEADER_LIMIT)
        message["Reply-To"] = Address(display_name=header_name, addr_spec=reply_to)
    message["Date"] = format_datetime(transcript[-1].sent_at)
    message["Message-ID"] = f"<{conversation_id}.chat@{domain}>"
    # Keep the rep's out-of-office replies from going to the visitor through Reply-To.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "OOF, AutoReply"
    text, markup = _render_text(view), _render_html(view)
    message.set_content(text)
    message.add_alternative(markup, subtype="html")
    # A boundary from the content instead of a random one keeps the whole message reproducible;
    # visitor text cannot contain the hash of itself.
    digest = hashlib.sha256((text + markup).encode()).hexdigest()
    message.set_boundary(f"=_{digest[:40]}")
    return message


@dataclass(frozen=True)
class _View:
    """The cleaned facts both renderings show."""

    reason: str
    name: str
    email_given: str
    reply_to: str | None
    identity_verified: bool
    page: str
    flow: str
    lines: list[tuple[str, str, str]]
    conversation_id: str

    @property
    def email_note(self) -> str:
        if not self.email_given:
            return "The visitor left no email address."
        if not self.reply_to:
            return "The visitor's email address does not look valid: replying will not reach them."
        return f"Reply to this email to answer {self.name or self.reply_to}."

    @property
    def identity(self) -> str:
        if self.identity_verified:
            return "verified by the website"
        return "not verified (as typed by the visitor)"


def _render_text(view: _View) -> str:
    facts = [
        ("Visitor", view.name or "(no name given)"),
        ("Email", view.email_given or "(none)"),
        ("Identity", view.identity),
    ]
    if view.page:
        facts.append(("Page", view.page))
    facts.append(("Chatflow", view.flow))
    out = [view.reason, ""]
    out += [f"{label + ':':<10}{value}" for label, value in facts]
    out += ["", view.email_note, "", "Transcript", "----------"]
    for when, author, text in view.lines:
        out.append(f"{when}  {author}")
        out += [f"  {row}" for row in text.split("\n")]
        out.append("")
    out += ["--", f"Sent by slackrouter for conversation {view.conversation_id}"]
    return "\n".join(out) + "\n"


def _render_html(view: _View) -> str:
    e = html.escape
    email_cell = e(view.email_given) or "(none)"
    if view.reply_to:
        email_cell = f'<a href="mailto:{e(view.reply_to)}">{e(view.reply_to)}</a>'
    facts = [
        ("Visitor", e(view.name) or "(no name given)"),
        ("Email", email_cell),
        ("Identity", e(view.identity)),
    ]
    if view.page:
        link = view.page.lower().startswith(("http://", "https://"))
        facts.append(
            ("Page", f'<a href="{e(view.page)}">{e(view.page)}</a>' if link else e(view.page))
        )
    facts.append(("Chatflow", e(view.flow)))
    rows = "".join(
        f'<tr><th align="left" style="padding-right:12px">{label}</th><td>{value}</td></tr>'
        for label, value in facts
    )
    lines = "".join(
        f'<p style="margin:0 0 10px"><span style="{_MUTED}">{e(when)}</span> <b>{e(author)}</b>'
        f"<br>{e(text).replace(chr(10), '<br>')}</p>"
        for when, author, text in view.lines
    )
    return (
        '<!DOCTYPE html>\n<html><body style="font-family:sans-serif;font-size:14px">'
        f"<p>{e(view.reason)}</p><table>{rows}</table><p><b>{e(view.email_note)}</b></p>"
        f"<h3>Transcript</h3>{lines}"
        f'<p style="{_MUTED};font-size:12px">Sent by slackrouter for conversation '
        f"{e(view.conversation_id)}</p></body></html>\n"
    )


def _scrub(text: str, *, keep_newlines: bool) -> str:
    """Control characters (and line/paragraph separators) become spaces, lone surrogates U+FFFD."""
    if keep_newlines:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if category == "Cs":
            kept.append("\ufffd")
        elif keep_newlines and char in "\n\t":
            kept.append(char)
        elif category in ("Cc", "Zl", "Zp"):
            kept.append(" ")
        else:
            kept.append(char)
    return "".join(kept)


def _one_line(text: str) -> str:
    return " ".join(_scrub(text, keep_newlines=False).split())


def _body_text(text: str) -> str:
    return _scrub(text, keep_newlines=True).strip()


def _header_text(text: str) -> str:
    """One-line text that no header parser will decode into something else (see module doc)."""
    return _one_line(text).replace("=?", "= ?")


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _plain_address(text: str) -> str | None:
    """`text` when it is exactly one plain address (no display name, no extra words)."""
    display_name, address = parseaddr(text)
    if display_name or address != text or len(address) > 254 or not _ADDRESS.fullmatch(address):
        return None
    return address


def configured_address(value: str, what: str) -> Address:
    """`addr@host` or `Name <addr@host>` from configuration, as a header-safe `Address`."""
    display_name, address = parseaddr(value)
    if _scrub(value, keep_newlines=False) != value or not _ADDRESS.fullmatch(address):
        raise ValueError(f"{what} is not a usable email address: {value!r}")
    return Address(display_name=_header_text(display_name), addr_spec=address)


def _timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M %Z").strip()
