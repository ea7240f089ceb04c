"""The website widget's look, kept per chatflow in `Chatflow.widget`: pure checks and defaults.

Keys: `color` (launcher, header and the visitor's bubbles), `text_color` (text on `color`),
`position` (`right` or `left`), and the texts `title`, `launcher_label`, `placeholder` and
`email_prompt`. Colours are `#rgb` or `#rrggbb`, and `text_color` on `color` must be readable
(WCAG AA: a contrast of at least 4.5:1).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

HEX_COLOR = re.compile(r"#(?:[0-9a-fA-F]{3}){1,2}")
POSITIONS = ("right", "left")
TEXT_LIMITS = {"title": 60, "launcher_label": 40, "placeholder": 80, "email_prompt": 200}
MIN_CONTRAST = 4.5
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class WidgetLook:
    color: str = "#1d4ed8"
    text_color: str = "#ffffff"
    position: str = "right"
    title: str = "Chat with us"
    launcher_label: str = "Chat with us"
    placeholder: str = "Write a message…"
    email_prompt: str = "Leave your email address and we'll write back."


KEYS = tuple(f.name for f in dataclasses.fields(WidgetLook))


class InvalidLook(ValueError):
    """Some settings are not valid; `problems` says which and why, one message each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _problem(key: str, value: Any) -> str | None:
    if not isinstance(value, str):
        return f"{key}: must be a string"
    if key in ("color", "text_color"):
        return None if HEX_COLOR.fullmatch(value) else f"{key}: must be a colour like #1d4ed8"
    if key == "position":
        return None if value in POSITIONS else f"{key}: must be one of {', '.join(POSITIONS)}"
    if not value.strip():
        return f"{key}: must not be blank"
    if _CONTROL.search(value):
        return f"{key}: must be one line of text"
    if len(value) > TEXT_LIMITS[key]:
        return f"{key}: must be at most {TEXT_LIMITS[key]} characters"
    return None


def _luminance(color: str) -> float:
    """WCAG relative luminance of a `#rgb`/`#rrggbb` colour."""
    digits = color[1:] if len(color) == 7 else "".join(c * 2 for c in color[1:])
    channels = []
    for i in (0, 2, 4):
        c = int(digits[i : i + 2], 16) / 255
        channels.append(c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4)
    r, g, b = channels
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two colours, from 1 to 21."""
    light, dark = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def validate_look(settings: Mapping[str, Any]) -> dict[str, str]:
    """What to store in `Chatflow.widget`: the given settings, texts stripped, or InvalidLook
    listing every problem. Keys left out keep their defaults."""
    problems = [f"{key}: unknown setting" for key in settings if key not in KEYS]
    problems += [p for key in KEYS if key in settings if (p := _problem(key, settings[key]))]
    if problems:
        raise InvalidLook(problems)
    look = dataclasses.replace(WidgetLook(), **settings)
    if contrast(look.color, look.text_color) < MIN_CONTRAST:
        raise InvalidLook(
            [
                f"text_color: {look.text_color} on {look.color} is hard to read "
                f"(contrast {contrast(look.color, look.text_color):.1f}:1, "
                f"needs {MIN_CONTRAST}:1)"
            ]
        )
    return {key: value.strip() for key, value in settings.items()}


def look_of(stored: Mapping[str, Any]) -> WidgetLook:
    """The look a chatflow's widget shows: its stored settings over the defaults. A stored value
    that is not valid (say, edited by hand in the database) is left out rather than shown."""
    valid = {k: v.strip() for k, v in stored.items() if k in KEYS and _problem(k, v) is None}
    look = dataclasses.replace(WidgetLook(), **valid)
    if contrast(look.color, look.text_color) < MIN_CONTRAST:
        return dataclasses.replace(look, color=WidgetLook.color, text_color=WidgetLook.text_color)
    return look
