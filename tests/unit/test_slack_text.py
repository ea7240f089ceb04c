import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slackrouter.adapters.slack.text import (
    escape_visitor_text,
    plain_text_object,
    slack_to_visitor_text,
    user_ids_in,
)

INJECTIONS = [
    "<!channel>",
    "<!here>",
    "<!everyone>",
    "<!here|here>",
    "<@U123>",
    "<#C123>",
    "<!subteam^S123|@sales>",
    "<https://evil.example|click me>",
    "<!date^1392734382^{date}|today>",
]


# --- visitor → Slack ----------------------------------------------------------------------


@pytest.mark.parametrize("attack", INJECTIONS)
def test_visitor_markup_is_escaped_into_inert_text(attack: str) -> None:
    escaped = escape_visitor_text(f"hi {attack} bye")
    assert "<" not in escaped
    assert ">" not in escaped
    assert escaped == "hi " + attack.replace("<", "&lt;").replace(">", "&gt;") + " bye"


def test_exactly_three_characters_are_escaped() -> None:
    assert escape_visitor_text("a & b < c > d") == "a &amp; b &lt; c &gt; d"
    assert escape_visitor_text("&lt; is already an entity") == "&amp;lt; is already an entity"
    assert escape_visitor_text("\"quotes\" 'and' *bold* _it_ ~s~ `c` @here #general") == (
        "\"quotes\" 'and' *bold* _it_ ~s~ `c` @here #general"
    )


def test_unicode_and_empty_text_pass_through() -> None:
    assert escape_visitor_text("") == ""
    assert escape_visitor_text("Grüße 👋🏽 日本語 <3") == "Grüße 👋🏽 日本語 &lt;3"


@given(st.text())
def test_escaped_visitor_text_reads_back_unchanged_and_holds_no_markup(text: str) -> None:
    escaped = escape_visitor_text(text)
    assert not re.search(r"[<>]|&(?!amp;|lt;|gt;)", escaped)
    assert slack_to_visitor_text(escaped, {}) == text


def test_plain_text_object_escapes() -> None:
    assert plain_text_object("<!channel> & *bold*") == {
        "type": "plain_text",
        "text": "&lt;!channel&gt; &amp; *bold*",
    }


def test_plain_text_object_keeps_text_at_the_limit() -> None:
    assert plain_text_object("x" * 3000)["text"] == "x" * 3000


def test_plain_text_object_truncates_with_an_ellipsis() -> None:
    text = plain_text_object("x" * 3001)["text"]
    assert len(text) == 3000
    assert text.endswith("x…")


def test_truncation_counts_the_escaped_length_and_never_splits_an_entity() -> None:
    text = plain_text_object("<" * 10, max_len=12)["text"]
    assert text == "&lt;&lt;…"  # a third "&lt;" would need 13 characters


def test_truncation_counts_emoji_as_two_utf16_units() -> None:
    assert plain_text_object("👋" * 5, max_len=7)["text"] == "👋👋👋…"


@given(st.text(min_size=1), st.integers(1, 40))
def test_plain_text_object_always_fits(text: str, max_len: int) -> None:
    out = plain_text_object(text, max_len=max_len)["text"]
    assert len(out.encode("utf-16-le")) // 2 <= max_len
    assert out == escape_visitor_text(text) or out.endswith("…")
    assert slack_to_visitor_text(out.removesuffix("…"), {}) in text


def test_plain_text_object_refuses_empty_text() -> None:
    with pytest.raises(ValueError, match="at least one character"):
        plain_text_object("")


# --- Slack → visitor ----------------------------------------------------------------------

NAMES = {"U123": "Ann Lee", "W999": "Grid User"}


@pytest.mark.parametrize(
    ("slack", "visitor"),
    [
        ("hi <@U123>", "hi @Ann Lee"),
        ("hi <@W999>", "hi @Grid User"),
        ("hi <@U404>", "hi @someone"),
        ("hi <@U123|bob>", "hi @bob"),
        ("hi <@U123|>", "hi @Ann Lee"),
        ("see <#C123|general>", "see #general"),
        ("see <#C123>", "see #channel"),
        ("see <#C123|>", "see #channel"),
        ("<!here> <!channel> <!everyone>", "@here @channel @everyone"),
        ("<!here|here>", "@here"),
        ("ask <!subteam^S123|@sales>", "ask @sales"),
        ("ask <!subteam^S123>", "ask @team"),
        (
            "on <!date^1392734382^{date} at {time}|Feb 18, 2014 6:39 AM PST>",
            "on Feb 18, 2014 6:39 AM PST",
        ),
        ("on <!date^1392734382^{date_short}^https://example.com/|Feb 18>", "on Feb 18"),
        ("on <!date^1392734382^{date}>", "on 2014-02-18 14:39 UTC"),
        ("<https://x.example/a|the docs>", "the docs (https://x.example/a)"),
        ("<https://x.example/a>", "https://x.example/a"),
        ("<http://example.com|example.com>", "example.com"),
        ("<https://example.com/|example.com>", "example.com"),
        ("<https://example.com|https://example.com>", "https://example.com"),
        ("<https://x.example/?a=1&amp;b=2|q &amp; a>", "q & a (https://x.example/?a=1&b=2)"),
        ("<mailto:a@b.c|a@b.c>", "a@b.c"),
        ("<mailto:a@b.c|Ann>", "Ann (a@b.c)"),
        ("<mailto:a@b.c>", "a@b.c"),
        ("1 &lt; 2 &amp;&amp; 3 &gt; 2", "1 < 2 && 3 > 2"),
        ("*bold* _italic_ ~strike~ `code`", "*bold* _italic_ ~strike~ `code`"),
        ("Grüße 👋🏽 <@U123>", "Grüße 👋🏽 @Ann Lee"),
        ("", ""),
    ],
)
def test_slack_markup_becomes_plain_text(slack: str, visitor: str) -> None:
    assert slack_to_visitor_text(slack, NAMES) == visitor


def test_entities_are_decoded_once_and_never_become_markup() -> None:
    # What a rep typed as "&lt;" arrives as "&amp;lt;" and must read "&lt;", not "<".
    assert slack_to_visitor_text("&amp;lt;", {}) == "&lt;"
    assert slack_to_visitor_text("&amp;amp;", {}) == "&amp;"
    # An escaped mention stays text: decoding happens after the markup is read.
    assert slack_to_visitor_text("&lt;@U123&gt;", NAMES) == "<@U123>"


def test_display_names_are_inserted_as_they_are() -> None:
    assert slack_to_visitor_text("<@U1>", {"U1": "R&amp;D Bot"}) == "@R&amp;D Bot"


def test_user_ids_in() -> None:
    text = "<@U1> and <@W2|bob>, <#C3|general>, <!subteam^S4|@sales>, &lt;@U5&gt; <@U1>"
    assert user_ids_in(text) == {"U1", "W2"}
    assert user_ids_in("no mentions") == set()
