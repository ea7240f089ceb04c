"""The widget's look: what an admin may set, and what the widget shows from what is stored."""

from __future__ import annotations

import pytest

from slackrouter.services.widget_look import (
    InvalidLook,
    WidgetLook,
    contrast,
    look_of,
    validate_look,
)


def test_an_empty_look_is_the_default_look() -> None:
    assert validate_look({}) == {}
    assert look_of({}) == WidgetLook()


def test_valid_settings_are_kept_with_texts_stripped() -> None:
    stored = validate_look(
        {"color": "#0B6E4F", "position": "left", "title": "  Talk to sales ", "text_color": "#fff"}
    )
    assert stored == {
        "color": "#0B6E4F",
        "position": "left",
        "title": "Talk to sales",
        "text_color": "#fff",
    }
    look = look_of(stored)
    assert (look.color, look.position, look.title) == ("#0B6E4F", "left", "Talk to sales")
    assert look.placeholder == WidgetLook.placeholder


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(InvalidLook) as caught:
        validate_look(
            {
                "color": "blue",
                "position": "top",
                "title": " ",
                "launcher_label": "x" * 41,
                "placeholder": "two\nlines",
                "email_prompt": 3,
                "font": "Comic Sans",
            }
        )
    assert caught.value.problems == [
        "font: unknown setting",
        "color: must be a colour like #1d4ed8",
        "position: must be one of right, left",
        "title: must not be blank",
        "launcher_label: must be at most 40 characters",
        "placeholder: must be one line of text",
        "email_prompt: must be a string",
    ]


@pytest.mark.parametrize("color", ["#abc", "#A1B2C3"])
def test_short_and_long_hex_colours_are_accepted(color: str) -> None:
    assert validate_look({"color": color, "text_color": "#000"})["color"] == color


@pytest.mark.parametrize("color", ["#abcd", "abcdef", "#ggg", "#1d4ed8 ", "red"])
def test_anything_else_is_not_a_colour(color: str) -> None:
    with pytest.raises(InvalidLook, match="color: must be a colour"):
        validate_look({"color": color})


def test_unreadable_text_on_the_chosen_colour_is_refused() -> None:
    with pytest.raises(InvalidLook, match=r"text_color: #ffffff on #ffff00 is hard to read"):
        validate_look({"color": "#ffff00"})
    assert validate_look({"color": "#ffff00", "text_color": "#111111"})


def test_contrast_follows_wcag() -> None:
    assert contrast("#000000", "#ffffff") == pytest.approx(21)
    assert contrast("#ffffff", "#000") == pytest.approx(21)
    assert contrast("#777777", "#777777") == pytest.approx(1)
    assert contrast("#1d4ed8", "#ffffff") > 4.5


def test_a_stored_value_that_is_not_valid_falls_back_to_its_default() -> None:
    look = look_of({"color": "nope", "position": "middle", "title": "Hi", "retired_key": "x"})
    assert look == WidgetLook(title="Hi")
    unreadable = look_of({"color": "#ffffff", "text_color": "#fefefe"})
    assert (unreadable.color, unreadable.text_color) == (WidgetLook.color, WidgetLook.text_color)
