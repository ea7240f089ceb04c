"""Slack's Block Kit limits as a checker: every problem a surface has, as Slack would refuse it.

The numbers are Slack's Block Kit reference's (blocks, block elements, composition objects,
views): see `slackrouter.adapters.slack.kit` for the list the builders keep to.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SURFACE_BLOCKS = {"message": 50, "modal": 100, "home": 100}
SELECTS_WITH_OPTIONS = {"static_select", "multi_static_select"}
CHOICES = {"checkboxes": 10, "radio_buttons": 10, "overflow": 5}


def problems(surface: str, payload: Mapping[str, Any]) -> list[str]:
    """What Slack would refuse in a message (`{"blocks": [...]}`) or a view."""
    found: list[str] = []
    blocks = payload.get("blocks") or []
    if len(blocks) > SURFACE_BLOCKS[surface]:
        found.append(f"{len(blocks)} blocks in a {surface} (at most {SURFACE_BLOCKS[surface]})")
    if surface == "modal":
        for key in ("title", "submit", "close"):
            if key in payload and payload[key] is not None:
                _text(found, f"view.{key}", payload[key], 24, plain=True)
        if len(payload.get("private_metadata") or "") > 3000:
            found.append("private_metadata longer than 3000")
        _length(found, "callback_id", payload.get("callback_id"), 255)
    for position, block in enumerate(blocks):
        _block(found, f"blocks[{position}]", block)
    return found


def _length(found: list[str], where: str, value: Any, limit: int) -> None:
    if value is not None and len(str(value)) > limit:
        found.append(f"{where}: {len(str(value))} characters (at most {limit})")


def _text(found: list[str], where: str, obj: Any, limit: int, *, plain: bool = False) -> None:
    if not isinstance(obj, Mapping) or obj.get("type") not in ("plain_text", "mrkdwn"):
        found.append(f"{where}: not a text object")
        return
    if plain and obj["type"] != "plain_text":
        found.append(f"{where}: must be plain_text")
    text = str(obj.get("text", ""))
    if not text:
        found.append(f"{where}: empty text")
    _length(found, where, text, limit)


def _option(found: list[str], where: str, option: Mapping[str, Any]) -> None:
    _text(found, f"{where}.text", option.get("text"), 75)
    _length(found, f"{where}.value", option.get("value"), 150)
    if "description" in option:
        _text(found, f"{where}.description", option["description"], 75)


def _confirm(found: list[str], where: str, dialog: Mapping[str, Any]) -> None:
    _text(found, f"{where}.title", dialog.get("title"), 100, plain=True)
    _text(found, f"{where}.text", dialog.get("text"), 300)
    _text(found, f"{where}.confirm", dialog.get("confirm"), 30, plain=True)
    _text(found, f"{where}.deny", dialog.get("deny"), 30, plain=True)


def _element(found: list[str], where: str, element: Mapping[str, Any]) -> None:
    kind = element.get("type")
    _length(found, f"{where}.action_id", element.get("action_id"), 255)
    if "placeholder" in element:
        _text(found, f"{where}.placeholder", element["placeholder"], 150, plain=True)
    if "confirm" in element:
        _confirm(found, f"{where}.confirm", element["confirm"])
    if kind == "button":
        _text(found, f"{where}.text", element.get("text"), 75, plain=True)
        _length(found, f"{where}.value", element.get("value"), 2000)
        _length(found, f"{where}.url", element.get("url"), 3000)
    options = list(element.get("options") or [])
    if kind in SELECTS_WITH_OPTIONS and len(options) > 100:
        found.append(f"{where}: {len(options)} options (at most 100)")
    if kind in CHOICES and len(options) > CHOICES[str(kind)]:
        found.append(f"{where}: {len(options)} options (at most {CHOICES[str(kind)]})")
    initial = list(element.get("initial_options") or [])
    if len(initial) > 100:
        found.append(f"{where}: {len(initial)} initial options (at most 100)")
    for position, option in enumerate([*options, *initial]):
        _option(found, f"{where}.options[{position}]", option)
    if "initial_option" in element:
        _option(found, f"{where}.initial_option", element["initial_option"])
    if kind == "plain_text_input":
        max_length = int(element.get("max_length") or 3000)
        if not 1 <= max_length <= 3000:
            found.append(f"{where}: max_length {max_length} (1 to 3000)")
        _length(found, f"{where}.initial_value", element.get("initial_value"), max_length)


def _block(found: list[str], where: str, block: Mapping[str, Any]) -> None:
    kind = block.get("type")
    _length(found, f"{where}.block_id", block.get("block_id"), 255)
    if kind == "section":
        if "text" in block:
            _text(found, f"{where}.text", block["text"], 3000)
        fields = list(block.get("fields") or [])
        if len(fields) > 10:
            found.append(f"{where}: {len(fields)} fields (at most 10)")
        for position, field in enumerate(fields):
            _text(found, f"{where}.fields[{position}]", field, 2000)
        if "text" not in block and not fields:
            found.append(f"{where}: a section needs text or fields")
        if "accessory" in block:
            _element(found, f"{where}.accessory", block["accessory"])
    elif kind == "context":
        elements = list(block.get("elements") or [])
        if not 1 <= len(elements) <= 10:
            found.append(f"{where}: {len(elements)} elements (1 to 10)")
        for position, element in enumerate(elements):
            if element.get("type") != "image":
                _text(found, f"{where}.elements[{position}]", element, 2000)
    elif kind == "header":
        _text(found, f"{where}.text", block.get("text"), 150, plain=True)
    elif kind == "actions":
        elements = list(block.get("elements") or [])
        if not 1 <= len(elements) <= 25:
            found.append(f"{where}: {len(elements)} elements (1 to 25)")
        for position, element in enumerate(elements):
            _element(found, f"{where}.elements[{position}]", element)
    elif kind == "input":
        _text(found, f"{where}.label", block.get("label"), 2000, plain=True)
        if "hint" in block:
            _text(found, f"{where}.hint", block["hint"], 2000, plain=True)
        _element(found, f"{where}.element", block.get("element") or {})
    elif kind != "divider":
        found.append(f"{where}: unexpected block type {kind!r}")
