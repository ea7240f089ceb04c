"""manifest.yml against the code: every event a listener waits for is subscribed, every Web API
method the code calls is covered by a granted scope (and no scope is granted for nothing), the
slash command and the shortcut exist, and the README says why each scope is there."""

from __future__ import annotations

import ast
import functools
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from slackrouter.bootstrap import build
from slackrouter.config import Settings
from slackrouter.slack_manifest import MANIFEST_PATH, bot_events, bot_scopes, load_manifest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "slackrouter"

# Web API method -> the bot scopes that allow it (any one is enough; empty: none needed).
# From each method's page at https://docs.slack.dev/reference/methods/ ("Required scopes").
METHOD_SCOPES: dict[str, set[str]] = {
    "auth.test": set(),
    "chat.delete": {"chat:write"},
    "chat.getPermalink": set(),
    "chat.postEphemeral": {"chat:write"},
    "chat.postMessage": {"chat:write"},
    "chat.update": {"chat:write"},
    "conversations.history": {"channels:history", "groups:history", "im:history", "mpim:history"},
    "conversations.info": {"channels:read", "groups:read", "im:read", "mpim:read"},
    "conversations.open": {"im:write", "mpim:write"},
    "conversations.replies": {"channels:history", "groups:history", "im:history", "mpim:history"},
    "dnd.teamInfo": {"dnd:read"},
    "team.info": {"team:read"},
    "usergroups.list": {"usergroups:read"},
    "usergroups.users.list": {"usergroups:read"},
    "users.getPresence": {"users:read"},
    "users.info": {"users:read"},
    "users.list": {"users:read"},
    "users.lookupByEmail": {"users:read.email"},
    "views.open": set(),
    "views.publish": set(),
    "views.push": set(),
    "views.update": set(),
}
# Bot event -> the scope it needs (None: none). https://docs.slack.dev/reference/events/
EVENT_SCOPES: dict[str, str | None] = {
    "app_home_opened": None,
    "app_uninstalled": None,
    "dnd_updated_user": "dnd:read",
    "message.channels": "channels:history",
    "message.groups": "groups:history",
    "message.im": "im:history",
    "message.mpim": "mpim:history",
    "tokens_revoked": None,
}
# Scopes a feature needs rather than a method: slash commands and shortcuts need `commands`;
# a rep's profile email (users.info, to email them a chat) needs `users:read.email` too.
FEATURE_SCOPES = {"commands", "users:read.email"}
# The app-level token's scope (Socket Mode), not a bot scope.
APP_LEVEL_METHODS = {"apps.connections.open"}


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return load_manifest(MANIFEST_PATH)


@pytest.fixture(scope="module")
def listeners(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Any]]:
    """What the app registers with Bolt, recorded as `build()` registers it, in both the
    one-workspace and the OAuth configuration."""
    recorded: defaultdict[str, list[Any]] = defaultdict(list)
    monkeypatch = pytest.MonkeyPatch()
    for kind in ("event", "message", "command", "shortcut", "action", "view", "options"):
        original = getattr(AsyncApp, kind)

        def recorder(self: AsyncApp, *args: Any, _kind: str = kind, _original: Any = original,
                     **kwargs: Any) -> Any:
            recorded[_kind].append(args[0] if args else kwargs)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(AsyncApp, kind, recorder)
    database = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('manifest') / 'db.sqlite'}"
    try:
        build(Settings(slack_bot_token="xoxb-x", slack_signing_secret="s", database_url=database))
        build(
            Settings(
                slack_client_id="1.2",
                slack_client_secret="c",
                slack_signing_secret="s",
                database_url=database,
            )
        )
    finally:
        monkeypatch.undo()
    return recorded


def _event_types(listeners: dict[str, list[Any]]) -> set[str]:
    types = set()
    for constraint in listeners["event"]:
        kind = constraint.get("type") if isinstance(constraint, dict) else constraint
        assert isinstance(kind, str), f"listener for an event pattern: {constraint!r}"
        types.add(kind)
    if listeners["message"]:
        types.add("message")
    return types


@functools.cache
def called_methods() -> dict[str, list[str]]:
    """Web API methods the code calls through a slack_sdk client (`…client.chat_postMessage(`),
    with where; the sandbox (the fake Slack) is not the app."""
    found: defaultdict[str, list[str]] = defaultdict(list)
    for path in sorted(PACKAGE.rglob("*.py")):
        if "sandbox" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            owner = node.func.value
            owner_name = getattr(owner, "attr", None) or getattr(owner, "id", "")
            name = node.func.attr
            if owner_name.endswith("client") and re.fullmatch(r"[a-z]+(_[a-zA-Z]+)+", name):
                assert hasattr(AsyncWebClient, name), f"{path}: {name} is no slack_sdk method"
                found[name.replace("_", ".")].append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_the_code_calls_some_web_api_methods_the_scan_sees() -> None:
    methods = called_methods()
    assert {"chat.postMessage", "users.getPresence", "conversations.open"} <= methods.keys()


def test_every_web_api_method_called_is_covered_by_a_granted_scope() -> None:
    granted = set(bot_scopes())
    for method, where in sorted(called_methods().items()):
        if method in APP_LEVEL_METHODS:
            continue
        assert method in METHOD_SCOPES, f"{method} ({where[0]}): add it to METHOD_SCOPES"
        needed = METHOD_SCOPES[method]
        assert not needed or needed & granted, f"{method} ({where[0]}) needs one of {needed}"


def test_every_event_listened_to_is_subscribed_and_every_subscription_is_listened_to(
    listeners: dict[str, list[Any]],
) -> None:
    listened = _event_types(listeners)
    subscribed = set(bot_events())
    subscribed_types = {event.split(".", 1)[0] for event in subscribed}
    assert listened - subscribed_types == set(), "listened to but not subscribed"
    assert subscribed_types - listened == set(), "subscribed but nobody listens"
    # Reps answer in the app's DMs and in channel threads, public and private.
    assert {"message.im", "message.channels", "message.groups"} <= subscribed


def test_every_subscribed_event_has_its_scope(manifest: dict[str, Any]) -> None:
    granted = set(bot_scopes(manifest))
    for event in bot_events(manifest):
        assert event in EVENT_SCOPES, f"{event}: add it to EVENT_SCOPES"
        scope = EVENT_SCOPES[event]
        assert scope is None or scope in granted, f"{event} needs {scope}"


def test_no_scope_is_granted_for_nothing(manifest: dict[str, Any]) -> None:
    used = set(FEATURE_SCOPES)
    for method in called_methods():
        used |= METHOD_SCOPES.get(method, set())
    used |= {EVENT_SCOPES[event] for event in bot_events(manifest)} - {None}  # type: ignore[arg-type]
    assert set(bot_scopes(manifest)) - used == set()


def test_the_slash_command_shortcuts_and_interactivity_match_the_listeners(
    manifest: dict[str, Any], listeners: dict[str, list[Any]]
) -> None:
    features = manifest["features"]
    commands = {c["command"] for c in features.get("slash_commands", [])}
    assert "/chatrouting" in commands
    assert set(listeners["command"]) == commands
    assert "commands" in bot_scopes(manifest)
    shortcuts = {s["callback_id"] for s in features.get("shortcuts", [])}
    assert set(listeners["shortcut"]) == shortcuts
    if listeners["action"] or listeners["view"] or listeners["shortcut"]:
        assert manifest["settings"]["interactivity"]["is_enabled"] is True


def test_app_home_socket_mode_and_a_schema_slack_accepts(manifest: dict[str, Any]) -> None:
    home = manifest["features"]["app_home"]
    # Reps write to the app in its DM; admins and reps see the Home tab.
    assert home == {
        "home_tab_enabled": True,
        "messages_tab_enabled": True,
        "messages_tab_read_only_enabled": False,
    }
    settings = manifest["settings"]
    assert settings["socket_mode_enabled"] is True
    assert "request_url" not in settings["event_subscriptions"]  # Socket Mode needs none
    assert set(manifest) <= {"_metadata", "display_information", "features", "oauth_config",
                             "settings"}
    assert len(manifest["display_information"]["description"]) <= 140


def test_the_readme_says_why_each_scope_is_granted() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for scope in bot_scopes():
        assert re.search(rf"^\| `{re.escape(scope)}` \|", readme, re.MULTILINE), scope
