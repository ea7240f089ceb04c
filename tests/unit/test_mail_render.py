"""The chat email: headers, both renderings, and visitor input that must not reach a header raw."""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from slackrouter.adapters.mail_render import TranscriptLine
from tests.mail_samples import CHAT_HEADERS, CHAT_START, parse_email, sample_chat


def reparsed(message: EmailMessage) -> EmailMessage:
    """The message as a receiver sees it: serialised to wire bytes and parsed back."""
    return parse_email(message.as_bytes())


def bodies(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    markup = message.get_body(("html",))
    assert text is not None and markup is not None
    return tuple(part.get_content().replace("\r\n", "\n") for part in (text, markup))


def test_headers_say_who_where_and_why() -> None:
    message = reparsed(sample_chat())

    assert message["Subject"] == "Chat from Nora on Sales (no one was available)"
    assert message["From"] == "slackrouter <chat@example.com>"
    assert message["To"] == "rep@example.com"
    assert message["Reply-To"] == "Nora <nora@example.org>"
    assert message["Date"] == "Tue, 04 Mar 2025 14:03:05 +0000"  # the last line's time
    assert message["Message-ID"] == "<c0ffee-42.chat@chat.example.com>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert set(message.keys()) == CHAT_HEADERS


def test_text_and_html_alternatives_carry_the_whole_chat() -> None:
    message = reparsed(sample_chat())

    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == [
        "text/plain",
        "text/html",
    ]
    text, markup = bodies(message)
    assert text.startswith("Nobody on the route was available\n")
    for expected in (
        "Visitor:  Nora",
        "Email:    nora@example.org",
        "Identity: not verified (as typed by the visitor)",
        "Page:     https://example.com/pricing?plan=team&seats=5",
        "Chatflow: Sales",
        "Reply to this email to answer Nora.",
        "2025-03-04 14:02 UTC  Nora\n  Hi, do you ship to Norway?",
        "2025-03-04 14:03 UTC  Nora\n  We need 5 seats.\n  By Friday.",
        "conversation c0ffee-42",
    ):
        assert expected in text
    for expected in (
        "Nobody on the route was available",
        '<a href="mailto:nora@example.org">nora@example.org</a>',
        '<a href="https://example.com/pricing?plan=team&amp;seats=5">',
        "2025-03-04 14:02 UTC",
        "Hi, do you ship to Norway?",
        "We need 5 seats.<br>By Friday.",
    ):
        assert expected in markup
    assert "<img" not in markup and "src=" not in markup


def test_a_verified_identity_says_so() -> None:
    text, _ = bodies(sample_chat(identity_verified=True))

    assert "Identity: verified by the website" in text


def test_times_are_shown_in_the_zone_they_are_given_in() -> None:
    oslo = CHAT_START.astimezone(ZoneInfo("Europe/Oslo"))
    message = reparsed(sample_chat(transcript=[TranscriptLine("Nora", "Hei", oslo)]))

    assert "2025-03-04 15:02 CET  Nora" in bodies(message)[0]
    assert message["Date"] == "Tue, 04 Mar 2025 15:02:05 +0100"


def test_without_an_address_the_mail_still_goes_and_says_so() -> None:
    message = reparsed(sample_chat(visitor_email=None))

    assert "Reply-To" not in message
    text, markup = bodies(message)
    assert "The visitor left no email address." in text
    assert "The visitor left no email address." in markup
    assert "Reply to this email" not in text


def test_an_invalid_address_is_shown_but_not_replied_to() -> None:
    message = reparsed(sample_chat(visitor_email="nora at example dot org"))

    assert "Reply-To" not in message
    text, markup = bodies(message)
    assert "Email:    nora at example dot org" in text
    assert "does not look valid" in text
    assert "nora at example dot org" in markup and "mailto:" not in markup


@pytest.mark.parametrize(
    "address",
    ["nora", "nora@localhost", "Nora <nora@example.org>", "nora@example.org, x@y.z", ".n@ex.org"],
)
def test_only_one_plain_address_becomes_reply_to(address: str) -> None:
    assert "Reply-To" not in reparsed(sample_chat(visitor_email=address))


def test_the_subject_falls_back_to_the_address_then_to_a_visitor() -> None:
    named_by_address = sample_chat(visitor_name=None)
    assert named_by_address["Subject"].startswith("Chat from nora@example.org on Sales")
    anonymous = sample_chat(visitor_name="  ", visitor_email=None)
    assert anonymous["Subject"] == "Chat from a visitor on Sales (no one was available)"
    assert "Visitor:  (no name given)" in bodies(anonymous)[0]


def test_a_long_name_is_shortened_in_headers_only() -> None:
    name = "N" * 200
    message = sample_chat(visitor_name=name)

    assert message["Subject"] == f"Chat from {'N' * 63}… on Sales (no one was available)"
    assert message["Reply-To"].addresses[0].display_name == "N" * 63 + "…"
    assert f"Visitor:  {name}" in bodies(message)[0]


def test_non_ascii_names_survive_the_trip() -> None:
    message = reparsed(
        sample_chat(visitor_name='Nóra Ødegård, "CEO" <ACME>', chatflow_name="Ventes")
    )

    assert (
        message["Subject"]
        == 'Chat from Nóra Ødegård, "CEO" <ACME> on Ventes (no one was available)'
    )
    assert message["Reply-To"].addresses[0].display_name == 'Nóra Ødegård, "CEO" <ACME>'
    assert message["Reply-To"].addresses[0].addr_spec == "nora@example.org"


@pytest.mark.parametrize(
    ("name", "address"),
    [
        ("Nora\r\nBcc: victim@example.com", "nora@example.org"),
        ("Nora\nBcc: victim@example.com", "a@b.c\r\nBcc: x@y.z"),
        ("Nora\rBcc: victim@example.com\r\n\r\nbody", "a@b.c\nBcc: x@y.z"),
        ("Nora\u2028Bcc: victim@example.com\x85X-Evil: 1", "a@b.c\u2028Bcc: x@y.z"),
        # Encoded words that decode to CR/LF, which this Python's parser would write out raw.
        ("=?utf-8?q?Nora=0D=0ABcc:_victim@example.com?=", "nora@example.org"),
        ("=?utf-8?b?Tm9yYQ0KQmNjOiB2aWN0aW1AZXhhbXBsZS5jb20=?=", "=?utf-8?q?a=0D=0A?=@b.c"),
    ],
)
def test_visitor_input_never_makes_a_header(name: str, address: str) -> None:
    message = reparsed(sample_chat(visitor_name=name, visitor_email=address, chatflow_name=name))

    assert set(message.keys()) <= CHAT_HEADERS
    assert "Bcc" not in message and "X-Evil" not in message
    for header in message.keys():
        assert "\r" not in str(message[header]) and "\n" not in str(message[header])
    assert [part.get_content_type() for part in message.iter_parts()] == [
        "text/plain",
        "text/html",
    ]
    if "Reply-To" in message:
        assert [a.addr_spec for a in message["Reply-To"].addresses] == ["nora@example.org"]


def test_visitor_text_is_escaped_in_html_and_cleaned_in_text() -> None:
    hostile = '<script>alert(1)</script><img src="https://tracker.example/x.gif">\x00\x1b[31m'
    message = reparsed(
        sample_chat(
            visitor_name="<b>Nora</b>",
            transcript=[TranscriptLine("<i>Nora</i>", hostile + "\r\nbye\ud800", CHAT_START)],
            page_url="javascript:alert(1)",
        )
    )

    text, markup = bodies(message)
    assert "<script" not in markup and "<img" not in markup and "<b>Nora" not in markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markup
    assert "&lt;b&gt;Nora&lt;/b&gt;" in markup
    assert 'href="javascript' not in markup and "javascript:alert(1)" in markup
    assert "\x00" not in text and "\x1b" not in text and "\r" not in text
    assert "bye\ufffd" in text


def test_building_twice_gives_the_same_bytes() -> None:
    assert sample_chat().as_bytes() == sample_chat().as_bytes()


@pytest.mark.parametrize(
    "overrides",
    [
        {"transcript": []},
        {"conversation_id": "c0ffee>\r\nBcc: x@y.z"},
        {"conversation_id": ""},
        {"domain": "example.com>"},
        {"to": "rep@example.com\r\nBcc: x@y.z"},
        {"to": "not an address"},
        {"sender": "chat@example"},
    ],
)
def test_bad_configuration_is_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        sample_chat(**overrides)


def test_a_transcript_time_must_be_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        TranscriptLine("Nora", "Hi", datetime(2025, 3, 4, 14, 2))
