"""The Slack app's manifest, `manifest.yml` at the project's root: the scopes, events and
features Slack grants the app. OAuth asks for its bot scopes, and `slackrouter check` compares
them with what a token was granted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MANIFEST_PATH = Path(__file__).resolve().parent.parent / "manifest.yml"


def load_manifest(path: Path = MANIFEST_PATH) -> dict[str, Any]:
    """The manifest as a dict; FileNotFoundError if it is not there (an installed wheel)."""
    return dict(yaml.safe_load(path.read_text(encoding="utf-8")) or {})


def bot_scopes(manifest: dict[str, Any] | None = None) -> tuple[str, ...]:
    """The bot scopes the manifest asks for, in its order."""
    manifest = load_manifest() if manifest is None else manifest
    scopes = ((manifest.get("oauth_config") or {}).get("scopes") or {}).get("bot") or []
    return tuple(str(scope) for scope in scopes)


def bot_events(manifest: dict[str, Any] | None = None) -> tuple[str, ...]:
    """The bot events the manifest subscribes to."""
    manifest = load_manifest() if manifest is None else manifest
    events = ((manifest.get("settings") or {}).get("event_subscriptions") or {}).get("bot_events")
    return tuple(str(event) for event in events or [])
