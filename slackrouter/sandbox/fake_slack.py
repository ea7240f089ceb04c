"""A fake Slack workspace that speaks Slack's Web API wire format.

`FakeSlack.asgi` answers `POST|GET /api/{method}` like slack.com does (HTTP 200 with `ok`/`error`
bodies, 429 with `Retry-After`), so the real `slack_sdk` client works against it unchanged via
`base_url`. It also plays the people in the workspace: their posts, edits and deletions reach the
app as signed Events API requests. `/hooks/...` receives what apps send to `response_url`s.

`GET /sandbox/` is a page that plays the reps in a browser (their DMs with the app, channels,
presence, a reply box per thread), built on the JSON control API for the local demo (bad input
answers 400; acting as a person before `configure_events` answers 409):
- `GET /sandbox/state`: users with presence and Do Not Disturb, channels with messages and threads
- `POST /sandbox/presence` `{user, presence}` and `POST /sandbox/dnd` `{user, dnd}` (the latter
  also delivers `dnd_updated_user` once events are configured)
- `POST /sandbox/reply` `{user, channel, thread_ts?, text}`: the person writes; `thread_ts`
  "latest" means the newest top-level message of that channel
- `POST /sandbox/edit` `{user, channel, ts, text}` and `POST /sandbox/delete` `{channel, ts}`
- `POST /sandbox/click` `{user, channel, ts, action_id}`: the person clicks the button
  `action_id` of an `actions` block of the message at `ts`; the app receives Slack's signed
  `block_actions` interaction (`payload=<json>`, form-encoded) with the message clicked, channel,
  container, trigger_id and response_url. No such message or button answers 404 and sends nothing;
  a conversation the person is not in answers 403; an app that fails the request, 502
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import hashlib
import itertools
import json
import math
import re
import secrets
import string
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

from slackrouter.sandbox.fake_slack_app import FakeSlackAppMixin
from slackrouter.sandbox.slack_requests import (
    SlackRequestSender,
    block_actions_payload,
    hook_url,
    message_event,
    new_id,
    rich_text_blocks,
)
from slackrouter.sandbox.socket_mode import SocketModeSender

JSON = dict[str, Any]

DEFAULT_BOT_SCOPES = (
    "app_mentions:read,channels:history,channels:read,chat:write,commands,dnd:read,"
    "groups:history,groups:read,im:history,im:read,im:write,usergroups:read,users:read,"
    "users:read.email"
)

_JSON_FIELDS = ("blocks", "attachments", "metadata", "view")
_NO_TOKEN_METHODS = frozenset({"oauth.v2.access"})
_MAX_TEXT = 40_000
_MAX_BLOCKS = 50
_MAX_DND_USERS = 50
_SANDBOX_PAGE = Path(__file__).parent / "static" / "sandbox.html"


@dataclass
class Call:
    """One Web API call as the fake received and answered it."""

    method: str
    params: JSON
    response: JSON
    status: int


@dataclass
class Delivery:
    """One event the fake delivered to the app; `status` is None when the app was unreachable."""

    envelope: JSON
    status: int | None


@dataclass
class HookPost:
    """One POST an app made to a `response_url` served by the fake."""

    path: str
    body: JSON


@dataclass
class _Pending:
    """A fault or stall waiting for the next calls to a method."""

    times: int


@dataclass
class _Fault(_Pending):
    status: int
    error: str
    retry_after: int


@dataclass
class _Stall(_Pending):
    seconds: float
    answered_first: bool = False


_P = TypeVar("_P", bound=_Pending)


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class _RateLimit:
    per_second: float
    burst: int
    buckets: dict[str, _Bucket] = field(default_factory=dict)


@dataclass
class _Dnd:
    enabled: bool
    next_start: int
    next_end: int


class _SandboxError(Exception):
    """A control API refusal with its HTTP status, e.g. 404 for a message that is not there."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _ApiError(Exception):
    """An `ok: false` answer; `extra` adds fields such as `response_metadata`."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.body: JSON = {"ok": False, "error": error, **extra}


def _invalid_arguments(*messages: str) -> _ApiError:
    return _ApiError(
        "invalid_arguments", response_metadata={"messages": [f"[ERROR] {m}" for m in messages]}
    )


@dataclass
class _Ctx:
    params: JSON
    caller: str
    authorization: str

    def get(self, name: str, default: Any = None) -> Any:
        value = self.params.get(name)
        return default if value in (None, "") else value

    def require(self, name: str) -> Any:
        value = self.get(name)
        if value is None:
            raise _invalid_arguments(f"missing required field: {name}")
        return value

    def flag(self, name: str) -> bool:
        return _flag(self.params.get(name))

    def integer(self, name: str, default: int) -> int:
        value = self.get(name)
        if value is None:
            return default
        try:
            return int(value)
        except (TypeError, ValueError):
            raise _invalid_arguments(f"invalid value for {name}") from None


def _flag(value: Any) -> bool:
    """Slack's reading of a boolean argument: JSON true, or "true"/"1" in a form."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true")
    return bool(value)


def _maybe_json(value: Any) -> Any:
    """Form-encoded calls carry blocks, attachments, metadata and views as JSON strings."""
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _ts_key(ts: str) -> Decimal:
    try:
        return Decimal(ts)
    except InvalidOperation:
        raise _invalid_arguments(f"invalid timestamp: {ts}") from None


def _encode_cursor(offset: int) -> str:
    return base64.b64encode(f"offset:{offset}".encode()).decode()


def _decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        kind, _, offset = base64.b64decode(cursor, validate=True).decode().partition(":")
        if kind != "offset":
            raise ValueError(cursor)
        return int(offset)
    except (ValueError, binascii.Error):
        raise _ApiError("invalid_cursor") from None


def _page(items: list[JSON], ctx: _Ctx, default_limit: int) -> tuple[list[JSON], str]:
    """Cursor pagination as Slack does it: `limit` items from `cursor`, plus the next cursor
    ("" on the last page)."""
    start = _decode_cursor(ctx.get("cursor"))
    limit = ctx.integer("limit", default_limit) or len(items)
    page = items[start : start + limit]
    more = start + limit < len(items)
    return page, _encode_cursor(start + limit) if more else ""


# --- what Slack would turn into a mention or a link ----------------------------------------

_SPECIAL = re.compile(r"<[^<>]+>")
_BARE_NAME = re.compile(r"(?<![\w@.+\-])@\w[\w.\-]*")
_BARE_BROADCAST = re.compile(r"(?<![\w@.+\-])@(?:channel|here|everyone)\b")
_RICH_TEXT_PINGS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "user": lambda e: f"<@{e.get('user_id')}>",
    "usergroup": lambda e: f"<!subteam^{e.get('usergroup_id')}>",
    "broadcast": lambda e: f"<!{e.get('range')}>",
    "channel": lambda e: f"<#{e.get('channel_id')}>",
    "link": lambda e: f"<{e.get('url')}>",
}
_ATTACHMENT_TEXT_FIELDS = ("pretext", "text", "title", "footer", "author_name", "fallback")


def pings_in(call_params: Mapping[str, Any]) -> list[str]:
    """Every token in a chat.postMessage/chat.update/chat.postEphemeral payload that Slack would
    render as a mention or a special link, in order of appearance.

    Deliberately conservative (it may flag more than Slack would, never less):
    - any literal `<...>` in the top-level `text`, in attachment texts and in `mrkdwn` or
      `markdown` text anywhere in `blocks`, whatever `mrkdwn` says: `<!channel>`, `<!here>`,
      `<!everyone>`, `<!subteam^S1>`, `<@U1>`, `<#C1>`, `<https://x|y>`, `<!date^...>`;
      `&lt;!channel&gt;` is inert text and is not flagged;
    - bare `@channel`, `@here`, `@everyone` in `mrkdwn` text objects unless `verbatim` is true
      (Slack's automatic parsing), and every bare `@name` anywhere when `link_names` is on or
      `parse` is "full";
    - rich_text elements of type user, usergroup, broadcast, channel and link.
    `plain_text` objects and rich_text `text` elements are inert.
    """
    linkify = _flag(call_params.get("link_names")) or call_params.get("parse") == "full"
    found: list[str] = []
    text = call_params.get("text")
    if isinstance(text, str):
        found += _text_pings(text, broadcasts=False, names=linkify)
    found += _block_pings(_maybe_json(call_params.get("blocks")), linkify)
    attachments = _maybe_json(call_params.get("attachments"))
    for attachment in attachments if isinstance(attachments, list) else []:
        if isinstance(attachment, Mapping):
            found += _attachment_pings(attachment, linkify)
    return found


def _text_pings(text: str, *, broadcasts: bool, names: bool) -> list[str]:
    hits = [(m.start(), m.group()) for m in _SPECIAL.finditer(text)]
    # Blank out what is already flagged so "<@U1>" does not also count as a bare "@U1".
    rest = _SPECIAL.sub(lambda m: " " * len(m.group()), text)
    bare = _BARE_NAME if names else _BARE_BROADCAST if broadcasts else None
    if bare is not None:
        hits += [(m.start(), m.group()) for m in bare.finditer(rest)]
    return [token for _, token in sorted(hits)]


def _block_pings(node: Any, linkify: bool) -> list[str]:
    if isinstance(node, list):
        return [token for item in node for token in _block_pings(item, linkify)]
    if not isinstance(node, Mapping):
        return []
    kind = node.get("type")
    text = node.get("text")
    if kind == "plain_text":
        return []
    if kind == "mrkdwn" and isinstance(text, str):
        return _text_pings(text, broadcasts=not _flag(node.get("verbatim")), names=linkify)
    if kind == "markdown" and isinstance(text, str):
        return _text_pings(text, broadcasts=True, names=linkify)
    if isinstance(kind, str) and kind in _RICH_TEXT_PINGS and "elements" not in node:
        return [_RICH_TEXT_PINGS[kind](node)]
    return [token for value in node.values() for token in _block_pings(value, linkify)]


def _attachment_pings(attachment: Mapping[str, Any], linkify: bool) -> list[str]:
    found: list[str] = []
    for key in _ATTACHMENT_TEXT_FIELDS:
        value = attachment.get(key)
        if isinstance(value, str):
            found += _text_pings(value, broadcasts=False, names=linkify)
    for attachment_field in attachment.get("fields") or []:
        for key in ("title", "value"):
            value = attachment_field.get(key) if isinstance(attachment_field, Mapping) else None
            if isinstance(value, str):
                found += _text_pings(value, broadcasts=False, names=linkify)
    return found + _block_pings(attachment.get("blocks"), linkify)


# --- the workspace ---------------------------------------------------------------------------


class FakeSlack(FakeSlackAppMixin):
    """In-memory state of one Slack workspace with one installed app, served as ASGI.

    Tokens: `bot_token` ("xoxb-fake") acts as the app's bot user. More tokens come from
    `add_token` or from `oauth.v2.access` with a code from `issue_oauth_code`.
    Users' availability: `set_presence` and `set_dnd` (True means in Do Not Disturb right now).
    """

    def __init__(
        self,
        *,
        team_id: str = "T0001",
        team_name: str = "Acme",
        team_domain: str = "acme",
        app_id: str = "A0001",
        app_name: str = "slackrouter",
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
        bot_token: str = "xoxb-fake",
        client_id: str = "1111.2222",
        client_secret: str = "fake-client-secret",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.team_id = team_id
        self.team_name = team_name
        self.team_domain = team_domain
        self.app_id = app_id
        self.app_name = app_name
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.bot_token = bot_token
        self.client_id = client_id
        self.client_secret = client_secret
        self.clock = clock

        self.paid_plan = True
        """False makes usergroups.* answer `plan_upgrade_required`, as on a free workspace."""
        self.echo_bot_messages = False
        """True delivers the app's own posts, edits and deletions back to it as events, as
        Slack does; apps are expected to ignore them."""

        self.tokens: dict[str, str] = {bot_token: bot_user_id}
        self.users: dict[str, JSON] = {}
        self.channels: dict[str, JSON] = {}
        self.usergroups: dict[str, JSON] = {}
        self.home_views: dict[str, JSON] = {}
        self.views: dict[str, JSON] = {}
        self.ephemeral: list[JSON] = []
        self.calls: list[Call] = []
        self.deliveries: list[Delivery] = []
        self.hook_posts: list[HookPost] = []

        self._messages: dict[str, list[JSON]] = {}
        self._members: dict[str, set[str]] = {}
        self._presence: dict[str, str] = {}
        self._dnd: dict[str, _Dnd] = {}
        self._faults: dict[str, list[_Fault]] = {}
        self._stalls: dict[str, list[_Stall]] = {}
        self._rate_limit: _RateLimit | None = None
        self._last_ts = 0
        self._ids = itertools.count(1)
        self._used_triggers: set[str] = set()
        self._oauth_codes: dict[str, tuple[str, str]] = {}
        self._outbox: list[JSON] = []
        self._sender: SlackRequestSender | None = None
        self._init_app(DEFAULT_BOT_SCOPES)  # scopes, Socket Mode, token rotation

        self.add_user("USLACKBOT", "slackbot", real_name="Slackbot", presence="active")
        self.add_user(bot_user_id, app_name, real_name=app_name, is_bot=True)

        self._methods: dict[str, Callable[[_Ctx], JSON]] = {
            "apps.connections.open": self._apps_connections_open,
            "auth.test": self._auth_test,
            "chat.delete": self._chat_delete,
            "chat.getPermalink": self._chat_get_permalink,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "conversations.history": self._conversations_history,
            "conversations.info": self._conversations_info,
            "conversations.open": self._conversations_open,
            "conversations.replies": self._conversations_replies,
            "dnd.teamInfo": self._dnd_team_info,
            "oauth.v2.access": self._oauth_v2_access,
            "team.info": self._team_info,
            "usergroups.list": self._usergroups_list,
            "usergroups.users.list": self._usergroups_users_list,
            "users.getPresence": self._users_get_presence,
            "users.info": self._users_info,
            "users.list": self._users_list,
            "users.lookupByEmail": self._users_lookup_by_email,
            "views.open": self._views_open,
            "views.publish": self._views_publish,
            "views.push": self._views_open,
            "views.update": self._views_update,
        }
        self.asgi = Starlette(
            routes=[
                Route("/api/{method}", self._api_endpoint, methods=["GET", "POST"]),
                Route("/hooks/{path:path}", self._hook_endpoint, methods=["POST"]),
                Route("/sandbox/", _sandbox_page, methods=["GET"]),
                Route("/sandbox/state", self._sandbox_state, methods=["GET"]),
                *(
                    Route(f"/sandbox/{name}", self._sandbox(action), methods=["POST"])
                    for name, action in (
                        ("presence", self._sandbox_presence),
                        ("dnd", self._sandbox_dnd),
                        ("reply", self._sandbox_reply),
                        ("edit", self._sandbox_edit),
                        ("delete", self._sandbox_delete),
                        ("click", self._sandbox_click),
                    )
                ),
            ]
        )

    # --- setting up the workspace ---------------------------------------------------------

    def add_user(
        self,
        user_id: str,
        name: str,
        real_name: str | None = None,
        display_name: str | None = None,
        email: str | None = None,
        is_bot: bool = False,
        deleted: bool = False,
        is_admin: bool = False,
        is_owner: bool = False,
        tz: str = "UTC",
        presence: str = "active",
        dnd: bool = False,
    ) -> JSON:
        """Add a member; returns the user object as users.info shows it."""
        real = real_name or name
        first, _, last = real.partition(" ")
        avatar = hashlib.md5(user_id.encode(), usedforsecurity=False).hexdigest()
        profile: JSON = {
            "title": "",
            "phone": "",
            "skype": "",
            "real_name": real,
            "real_name_normalized": real,
            "display_name": display_name or "",
            "display_name_normalized": display_name or "",
            "fields": None,
            "status_text": "",
            "status_emoji": "",
            "status_expiration": 0,
            "avatar_hash": avatar[:12],
            "first_name": first,
            "last_name": last,
            **{
                f"image_{size}": f"https://secure.gravatar.com/avatar/{avatar}.jpg?s={size}&d=identicon"
                for size in (24, 32, 48, 72, 192, 512)
            },
            "team": self.team_id,
        }
        if email is not None:
            profile["email"] = email
        if is_bot:
            ours = user_id == self.bot_user_id
            profile.update(
                bot_id=self.bot_id if ours else f"B{user_id[1:]}",
                api_app_id=self.app_id if ours else f"A{user_id[1:]}",
                always_active=True,
            )
        tz_offset, tz_label = _tz_info(tz)
        user: JSON = {
            "id": user_id,
            "team_id": self.team_id,
            "name": name,
            "deleted": deleted,
            "color": avatar[:6],
            "real_name": real,
            "tz": tz,
            "tz_label": tz_label,
            "tz_offset": tz_offset,
            "profile": profile,
            "is_admin": is_admin,
            "is_owner": is_owner,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": is_bot,
            "is_app_user": False,
            "updated": int(self.clock()),
            "is_email_confirmed": email is not None,
            "who_can_share_contact_card": "EVERYONE",
        }
        self.users[user_id] = user
        self.set_presence(user_id, presence)
        self.set_dnd(user_id, dnd)
        return user

    def add_channel(
        self,
        channel_id: str,
        name: str,
        is_private: bool = False,
        *,
        members: Iterable[str] = (),
        bot_member: bool = True,
    ) -> JSON:
        """Add a channel (C… or, for legacy private channels, G…); returns the channel object.
        With `bot_member=False` the app is not in it: posting there fails as in Slack."""
        is_group = channel_id.startswith("G")
        channel: JSON = {
            "id": channel_id,
            "name": name,
            "is_channel": not is_group,
            "is_group": is_group,
            "is_im": False,
            "is_mpim": False,
            "is_private": is_private or is_group,
            "created": int(self.clock()),
            "is_archived": False,
            "is_general": name == "general",
            "unlinked": 0,
            "name_normalized": name,
            "is_shared": False,
            "is_org_shared": False,
            "is_ext_shared": False,
            "is_pending_ext_shared": False,
            "is_member": bot_member,
            "creator": "",
            "topic": {"value": "", "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
            "previous_names": [],
            "context_team_id": self.team_id,
        }
        self.channels[channel_id] = channel
        self._messages.setdefault(channel_id, [])
        self._members[channel_id] = set(members) | ({self.bot_user_id} if bot_member else set())
        return channel

    def add_usergroup(
        self,
        usergroup_id: str,
        handle: str,
        name: str | None = None,
        users: Iterable[str] = (),
        *,
        description: str = "",
        disabled: bool = False,
    ) -> JSON:
        """Add a user group (S…); returns it as usergroups.list shows it with include_users."""
        now = int(self.clock())
        group: JSON = {
            "id": usergroup_id,
            "team_id": self.team_id,
            "is_usergroup": True,
            "is_subteam": True,
            "name": name or handle,
            "description": description,
            "handle": handle,
            "is_external": False,
            "date_create": now,
            "date_update": now,
            "date_delete": now if disabled else 0,
            "auto_type": None,
            "auto_provision": False,
            "enterprise_subteam_id": "",
            "created_by": "USLACKBOT",
            "updated_by": "USLACKBOT",
            "deleted_by": None,
            "prefs": {"channels": [], "groups": []},
            "users": list(users),
        }
        group["user_count"] = len(group["users"])
        self.usergroups[usergroup_id] = group
        return group

    def add_token(self, token: str, user_id: str) -> None:
        """Make `token` valid, acting as `user_id` (a person's user token, or another bot)."""
        self.tokens[token] = user_id

    def issue_oauth_code(self, user_id: str, scope: str = DEFAULT_BOT_SCOPES) -> str:
        """A one-time code, as Slack's redirect hands it to the app, for installing the app by
        `user_id`; oauth.v2.access exchanges it for a new bot token."""
        code = f"{self.team_id}.{secrets.token_hex(8)}"
        self._oauth_codes[code] = (user_id, scope)
        return code

    def set_presence(self, user_id: str, presence: str) -> None:
        """`active` or `away`, as users.getPresence will report it."""
        if presence not in ("active", "away"):
            raise ValueError(f"presence is 'active' or 'away', not {presence!r}")
        self._user(user_id)
        self._presence[user_id] = presence

    def set_dnd(
        self, user_id: str, dnd: bool, *, start: int | None = None, end: int | None = None
    ) -> None:
        """`dnd=True`: the user is in Do Not Disturb now (for an hour unless `end` is given);
        pass a future `start` for a scheduled window that has not begun. `dnd=False`: none."""
        self._user(user_id)
        now = int(self.clock())
        if dnd:
            self._dnd[user_id] = _Dnd(True, now - 60 if start is None else start, end or now + 3600)
        else:
            self._dnd[user_id] = _Dnd(False, 1, 1)

    # --- fault injection --------------------------------------------------------------------

    def fail(
        self,
        method: str,
        error: str | None = None,
        status: int | None = None,
        retry_after: int = 1,
        times: int = 1,
    ) -> None:
        """Answer the next `times` calls to `method` with an error instead of doing the work.

        Defaults: HTTP 429 `ratelimited` with `Retry-After: retry_after`. `status=500` (or
        another 5xx) answers that status with `internal_error`; an `error` alone answers it with
        HTTP 200, as Slack reports ordinary errors.
        """
        if status is None:
            status = 429 if error in (None, "ratelimited") else 200
        if error is None:
            error = {429: "ratelimited"}.get(status, "internal_error")
        self._faults.setdefault(method, []).append(_Fault(times, status, error, retry_after))

    def stall(
        self, method: str, seconds: float, times: int = 1, *, answered_first: bool = False
    ) -> None:
        """Wait `seconds` before answering the next `times` calls to `method` (a slow Slack).
        A stalled answer ends early if the client gives up and disconnects. `answered_first`:
        the answer is made at once and arrives `seconds` later (what it says may be out of
        date by then)."""
        self._stalls.setdefault(method, []).append(_Stall(times, seconds, answered_first))

    def rate_limit_per_channel(self, per_second: float | None = 1.0, *, burst: int = 3) -> None:
        """Enforce chat.postMessage's limit of about one message per second per channel: a
        bucket of `burst` posts refilled at `per_second`; beyond it, 429 with `Retry-After`.
        `per_second=None` turns the limit off."""
        self._rate_limit = None if per_second is None else _RateLimit(per_second, burst)

    # --- looking at what happened -----------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        """The recorded calls to one Web API method, oldest first."""
        return [call for call in self.calls if call.method == method]

    def messages_in(self, channel: str) -> list[JSON]:
        """All messages of a channel, thread replies included, oldest first."""
        return copy.deepcopy(self._messages.get(channel, []))

    def thread(self, channel: str, thread_ts: str) -> list[JSON]:
        """A thread's parent and replies, oldest first (empty if there is no such parent)."""
        parent = self._find(channel, thread_ts)
        if parent is None or parent.get("thread_ts", thread_ts) != thread_ts:
            return []
        return copy.deepcopy(self._thread(channel, thread_ts))

    def snapshot(self) -> JSON:
        """The whole workspace as plain JSON: what `GET /sandbox/state` shows."""
        users = [
            {
                "id": uid,
                "name": u["name"],
                "real_name": u["real_name"],
                "is_bot": u["is_bot"],
                "deleted": u["deleted"],
                "presence": self._presence[uid],
                "dnd": self._in_dnd(uid),
                "image": u["profile"]["image_72"],
            }
            for uid, u in self.users.items()
        ]
        channels = []
        for cid, channel in self.channels.items():
            top = [m for m in self._messages[cid] if self._is_top_level(m)]
            channels.append(
                {
                    "id": cid,
                    "name": channel.get("name"),
                    "is_im": channel["is_im"],
                    "user": channel.get("user"),
                    "messages": [
                        {
                            **m,
                            "replies": self._thread(cid, m["ts"])[1:] if "reply_count" in m else [],
                        }
                        for m in top
                    ],
                }
            )
        return copy.deepcopy(
            {
                "team": {"id": self.team_id, "name": self.team_name},
                "users": users,
                "channels": channels,
                "home_views": self.home_views,
            }
        )

    # --- playing the people in the workspace ------------------------------------------------

    def configure_events(
        self, url: str, signing_secret: str, *, hooks_url: str | None = None
    ) -> SlackRequestSender:
        """Where the app receives Events API requests, and its signing secret. `hooks_url`
        (this fake's base URL + "/hooks") makes `response_url`s point back at the fake.
        Returns the sender, which can also send slash commands and interactions."""
        self._sender = SlackRequestSender(
            url,
            signing_secret,
            self.team_id,
            self.app_id,
            bot_user_id=self.bot_user_id,
            hooks_url=hooks_url or "https://hooks.slack.com",
        )
        return self._sender

    @property
    def sender(self) -> SlackRequestSender:
        """The sender set up by `configure_events`."""
        if self._sender is None:
            raise RuntimeError("call configure_events(url, signing_secret) first")
        return self._sender

    async def user_posts(
        self, user_id: str, channel: str, text: str, thread_ts: str | None = None
    ) -> JSON:
        """`user_id` writes `text` in `channel` (a D… channel is the user's DM with the app and
        is opened if needed); stores the message and delivers the `message` event. Returns the
        delivered envelope. A bot user (another app) posts with its bot_id and bot_profile."""
        sender = self.sender
        author = self._user(user_id)
        channel_id = self._conversation_for(user_id, channel)
        ts = self._next_ts()
        parent = self._find(channel_id, thread_ts) if thread_ts else None
        event = message_event(
            user_id,
            channel_id,
            text,
            ts,
            thread_ts,
            self._channel_type(channel_id),
            team_id=self.team_id,
            parent_user_id=parent.get("user") if parent else None,
        )
        if author["is_bot"]:
            del event["client_msg_id"]
            event.update(self._authored(user_id))
        self._insert(channel_id, _without(event, "channel", "event_ts", "channel_type"))
        return await self._deliver(sender, event)

    async def user_edits(self, user_id: str, channel: str, ts: str, new_text: str) -> JSON:
        """`user_id` edits their message; delivers `message_changed`. Returns the envelope."""
        sender = self.sender
        message = self._own_message(channel, ts, user_id)
        previous = copy.deepcopy(message)
        message.update(text=new_text, blocks=rich_text_blocks(new_text))
        return await self._deliver(sender, self._edited(channel, message, previous, user_id))

    async def user_clicks(self, user_id: str, channel: str, ts: str, action_id: str) -> JSON:
        """`user_id` clicks the button `action_id` in an `actions` block of the message at `ts`
        in `channel`; delivers Slack's `block_actions` interaction and returns its payload.
        Raises `_SandboxError` (nothing is sent) when there is no such message or button, when
        the person cannot see the conversation, or when the app does not accept the request."""
        self._user(user_id)
        conversation = self.channels.get(channel)
        message = self._find(channel, ts)
        if conversation is None or message is None:
            raise _SandboxError(404, f"no message {ts} in {channel}")
        found = _button(message, action_id)
        if found is None:
            raise _SandboxError(404, f"message {ts} in {channel} has no button {action_id}")
        if conversation["is_private"] and user_id not in self._members[channel]:
            raise _SandboxError(403, f"{user_id} is not in {channel}")
        sender = self.sender
        block_id, button = found
        payload = block_actions_payload(
            user_id=user_id,
            user_name=self.users[user_id]["name"],
            action_id=action_id,
            value=button.get("value"),
            block_id=block_id,
            action={key: button[key] for key in ("text", "style") if key in button},
            message=copy.deepcopy(message),
            channel_id=channel,
            team_id=self.team_id,
            api_app_id=self.app_id,
            response_url=hook_url("actions", self.team_id, sender.hooks_url),
        )
        payload["channel"]["name"] = (
            "directmessage" if conversation["is_im"] else conversation.get("name", channel)
        )
        if message.get("thread_ts") not in (None, ts):
            payload["container"]["thread_ts"] = message["thread_ts"]
        await _send_interaction(sender, payload)
        return payload

    async def user_deletes(self, channel: str, ts: str) -> JSON:
        """The author deletes a message; delivers `message_deleted`. Returns the envelope."""
        sender = self.sender
        previous = self._remove(channel, ts)
        return await self._deliver(sender, self._deleted_event(channel, previous))

    async def announce_dnd(self, user_id: str) -> JSON:
        """Deliver `dnd_updated_user` with the user's current Do Not Disturb state."""
        event = {
            "type": "dnd_updated_user",
            "user": user_id,
            "dnd_status": self._dnd_status(user_id),
            "event_ts": self._next_ts(),
        }
        return await self._deliver(self.sender, event)

    # --- HTTP --------------------------------------------------------------------------------

    async def _api_endpoint(self, request: Request) -> Response:
        method = request.path_params["method"]
        params = await _read_params(request)
        param_token = params.pop("token", None)
        token = _bearer(request) or param_token
        stall = _take(self._stalls, method)
        if stall is not None and not stall.answered_first:
            await _sleep_unless_disconnected(request, stall.seconds)
        headers: dict[str, str] = {}
        fault = _take(self._faults, method)
        if fault is not None:
            status, body = fault.status, {"ok": False, "error": fault.error}
            if status == 429:
                headers["Retry-After"] = str(fault.retry_after)
        else:
            authorization = request.headers.get("authorization", "")
            status, body, headers = self._answer(method, params, token, authorization)
        self.calls.append(Call(method, copy.deepcopy(params), copy.deepcopy(body), status))
        if stall is not None and stall.answered_first:
            await _sleep_unless_disconnected(request, stall.seconds)
        await self._flush_outbox()
        return Response(
            json.dumps(body),
            status_code=status,
            headers=headers,
            media_type="application/json; charset=utf-8",
        )

    def _answer(
        self, method: str, params: JSON, token: str | None, authorization: str
    ) -> tuple[int, JSON, dict[str, str]]:
        handler = self._methods.get(method)
        if handler is None:
            return 200, {"ok": False, "error": "unknown_method", "req_method": method}, {}
        if method in _NO_TOKEN_METHODS:
            caller = ""
        elif not token:
            return 200, {"ok": False, "error": "not_authed"}, {}
        elif token not in self.tokens:
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        else:
            caller = self.tokens[token]
        if method == "chat.postMessage":
            wait = self._rate_limited(str(params.get("channel", "")))
            if wait is not None:
                return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(wait)}
        try:
            body = {"ok": True, **handler(_Ctx(params, caller, authorization))}
        except _ApiError as error:
            body = error.body
        return 200, body, self._scope_headers(token)

    async def _hook_endpoint(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            body = dict(parse_qsl(raw.decode()))
        self.hook_posts.append(HookPost(request.path_params["path"], body))
        return PlainTextResponse("ok")

    async def _sandbox_state(self, request: Request) -> Response:
        return _json(self.snapshot())

    def _sandbox(self, action: Callable[[JSON], Awaitable[JSON]]) -> Callable[..., Any]:
        """A control endpoint: JSON in, JSON out; bad input is 400, events not set up is 409."""

        async def endpoint(request: Request) -> Response:
            try:
                body = await request.json()
                return _json({"ok": True, **await action(body)})
            except _SandboxError as error:
                return _json({"ok": False, "error": str(error)}, error.status)
            except (KeyError, ValueError, TypeError) as error:
                return _json({"ok": False, "error": f"{type(error).__name__}: {error}"}, 400)
            except RuntimeError as error:
                return _json({"ok": False, "error": str(error)}, 409)

        return endpoint

    async def _sandbox_presence(self, body: JSON) -> JSON:
        self.set_presence(body["user"], body["presence"])
        return {}

    async def _sandbox_dnd(self, body: JSON) -> JSON:
        self.set_dnd(body["user"], _flag(body["dnd"]))
        if self._sender is not None:
            await self.announce_dnd(body["user"])
        return {}

    async def _sandbox_reply(self, body: JSON) -> JSON:
        thread_ts = body.get("thread_ts") or None
        if thread_ts == "latest":
            thread_ts = self._latest_top_level(
                self._conversation_for(body["user"], body["channel"])
            )
        return _receipt(
            await self.user_posts(body["user"], body["channel"], body["text"], thread_ts)
        )

    async def _sandbox_edit(self, body: JSON) -> JSON:
        return _receipt(
            await self.user_edits(body["user"], body["channel"], body["ts"], body["text"])
        )

    async def _sandbox_delete(self, body: JSON) -> JSON:
        return _receipt(await self.user_deletes(body["channel"], body["ts"]))

    async def _sandbox_click(self, body: JSON) -> JSON:
        payload = await self.user_clicks(
            body["user"], body["channel"], body["ts"], body["action_id"]
        )
        [action] = payload["actions"]
        return {"trigger_id": payload["trigger_id"], "action_ts": action["action_ts"]}

    # --- Web API methods --------------------------------------------------------------------

    def _auth_test(self, ctx: _Ctx) -> JSON:
        user = self.users[ctx.caller]
        body: JSON = {
            "url": f"https://{self.team_domain}.slack.com/",
            "team": self.team_name,
            "user": user["name"],
            "team_id": self.team_id,
            "user_id": ctx.caller,
        }
        if user["is_bot"]:
            body["bot_id"] = user["profile"]["bot_id"]
        body["is_enterprise_install"] = False
        return body

    def _chat_post_message(self, ctx: _Ctx) -> JSON:
        channel_id = self._postable_channel(ctx)
        content = self._message_content(ctx)
        message = self._authored(ctx.caller)
        message.update(content)
        thread_ts = ctx.get("thread_ts")
        if thread_ts is not None and ctx.flag("reply_broadcast"):
            message["subtype"] = "thread_broadcast"
        stored = self._insert(channel_id, message, str(thread_ts) if thread_ts else None)
        self._echo({**stored, "channel": channel_id, "event_ts": stored["ts"]}, channel_id)
        return {"channel": channel_id, "ts": stored["ts"], "message": copy.deepcopy(stored)}

    def _chat_update(self, ctx: _Ctx) -> JSON:
        channel_id, ts, message = self._callers_message(ctx, "cant_update_message")
        if not any(ctx.params.get(key) for key in ("text", "blocks", "attachments")):
            raise _ApiError("no_text")
        previous = copy.deepcopy(message)
        for key in ("text", "blocks", "attachments", "metadata"):
            if key in ctx.params:
                message[key] = copy.deepcopy(ctx.params[key])
        self._check_content(message)
        self._echo(self._edited(channel_id, message, previous, ctx.caller), channel_id)
        return {
            "channel": channel_id,
            "ts": ts,
            "text": message.get("text", ""),
            "message": copy.deepcopy(_without(message, "ts")),
        }

    def _chat_delete(self, ctx: _Ctx) -> JSON:
        channel_id, ts, _ = self._callers_message(ctx, "cant_delete_message")
        previous = self._remove(channel_id, ts)
        self._echo(self._deleted_event(channel_id, previous), channel_id)
        return {"channel": channel_id, "ts": ts}

    def _chat_get_permalink(self, ctx: _Ctx) -> JSON:
        channel_id, ts, message = self._named_message(ctx, ts_field="message_ts")
        link = f"https://{self.team_domain}.slack.com/archives/{channel_id}/p{ts.replace('.', '')}"
        if message.get("thread_ts", ts) != ts:
            link += f"?thread_ts={message['thread_ts']}&cid={channel_id}"
        return {"channel": channel_id, "permalink": link}

    def _chat_post_ephemeral(self, ctx: _Ctx) -> JSON:
        channel_id = self._postable_channel(ctx)
        user_id = ctx.require("user")
        if user_id not in self.users:
            raise _ApiError("user_not_found")
        ts = self._next_ts()
        message = {"channel": channel_id, "user": user_id, "ts": ts, **self._message_content(ctx)}
        if ctx.get("thread_ts") is not None:
            message["thread_ts"] = ctx.get("thread_ts")
        self.ephemeral.append(message)
        return {"message_ts": ts}

    def _conversations_open(self, ctx: _Ctx) -> JSON:
        if ctx.get("channel") is not None:
            channel_id = self._readable_channel(ctx.get("channel"))
            return {"no_op": True, "already_open": True, "channel": {"id": channel_id}}
        raw = ctx.get("users")
        if raw is None:
            raise _ApiError("users_list_not_supplied")
        user_ids = [u.strip() for u in str(raw).split(",") if u.strip()]
        for user_id in user_ids:
            if user_id not in self.users:
                raise _ApiError("user_not_found")
        existing = self._dm_id(user_ids) in self.channels
        channel = self._open_dm(user_ids)
        shown = copy.deepcopy(channel) if ctx.flag("return_im") else {"id": channel["id"]}
        return {"no_op": existing, "already_open": existing, "channel": shown}

    def _conversations_info(self, ctx: _Ctx) -> JSON:
        channel_id = self._readable_channel(ctx.get("channel"), public_ok=True)
        channel = copy.deepcopy(self.channels[channel_id])
        if ctx.flag("include_num_members"):
            channel["num_members"] = len(self._members[channel_id])
        return {"channel": channel}

    def _conversations_history(self, ctx: _Ctx) -> JSON:
        channel_id = self._readable_channel(ctx.get("channel"))
        oldest = _ts_key(str(ctx.get("oldest", "0")))
        latest = ctx.get("latest")
        newest = _ts_key(str(latest)) if latest is not None else None
        inclusive = ctx.flag("inclusive")

        def in_range(ts: Decimal) -> bool:
            above = ts >= oldest if inclusive else ts > oldest
            below = newest is None or (ts <= newest if inclusive else ts < newest)
            return above and below

        messages = [
            m
            for m in reversed(self._messages[channel_id])
            if self._is_top_level(m) and in_range(_ts_key(m["ts"]))
        ]
        page, cursor = _page(messages, ctx, 100)
        return {
            "messages": copy.deepcopy(page),
            "has_more": bool(cursor),
            "pin_count": 0,
            "channel_actions_ts": None,
            "channel_actions_count": 0,
            "response_metadata": {"next_cursor": cursor},
        }

    def _conversations_replies(self, ctx: _Ctx) -> JSON:
        channel_id, ts, message = self._named_message(ctx, not_found="thread_not_found")
        thread_ts = message.get("thread_ts", ts)
        if thread_ts != ts:
            messages = [message]
        else:
            messages = self._thread(channel_id, ts)
        page, cursor = _page(messages, ctx, 1000)
        return {
            "messages": copy.deepcopy(page),
            "has_more": bool(cursor),
            "response_metadata": {"next_cursor": cursor},
        }

    def _users_info(self, ctx: _Ctx) -> JSON:
        user_id = ctx.require("user")
        if user_id not in self.users:
            raise _ApiError("user_not_found")
        return {"user": copy.deepcopy(self.users[user_id])}

    def _users_list(self, ctx: _Ctx) -> JSON:
        members, cursor = _page(list(self.users.values()), ctx, 0)
        return {
            "members": copy.deepcopy(members),
            "cache_ts": int(self.clock()),
            "response_metadata": {"next_cursor": cursor},
        }

    def _users_get_presence(self, ctx: _Ctx) -> JSON:
        user_id = ctx.get("user", ctx.caller)
        if user_id not in self.users:
            raise _ApiError("user_not_found")
        presence = "away" if self.users[user_id]["deleted"] else self._presence[user_id]
        if user_id != ctx.caller:
            return {"presence": presence}
        body: JSON = {
            "presence": presence,
            "online": presence == "active",
            "auto_away": False,
            "manual_away": presence == "away",
            "connection_count": 1 if presence == "active" else 0,
        }
        if presence == "active":
            body["last_activity"] = int(self.clock())
        return body

    def _users_lookup_by_email(self, ctx: _Ctx) -> JSON:
        email = str(ctx.require("email")).lower()
        for user in self.users.values():
            if str(user["profile"].get("email", "")).lower() == email:
                return {"user": copy.deepcopy(user)}
        raise _ApiError("users_not_found")

    def _dnd_team_info(self, ctx: _Ctx) -> JSON:
        user_ids = [u.strip() for u in str(ctx.require("users")).split(",") if u.strip()]
        if len(user_ids) > _MAX_DND_USERS:
            raise _invalid_arguments(f"no more than {_MAX_DND_USERS} users allowed")
        for user_id in user_ids:
            if user_id not in self.users:
                raise _ApiError("user_not_found")
        return {"users": {user_id: self._dnd_status(user_id) for user_id in user_ids}}

    def _usergroups_list(self, ctx: _Ctx) -> JSON:
        self._require_paid_plan()
        groups = []
        for group in self.usergroups.values():
            if group["date_delete"] and not ctx.flag("include_disabled"):
                continue
            shown = copy.deepcopy(group)
            if not ctx.flag("include_users"):
                del shown["users"]
            if not ctx.flag("include_count"):
                del shown["user_count"]
            groups.append(shown)
        return {"usergroups": groups}

    def _usergroups_users_list(self, ctx: _Ctx) -> JSON:
        self._require_paid_plan()
        group = self.usergroups.get(str(ctx.require("usergroup")))
        if group is None:
            raise _ApiError("no_such_subteam")
        return {"users": list(group["users"])}

    def _views_open(self, ctx: _Ctx) -> JSON:
        """views.open and views.push: a new modal for a fresh trigger."""
        self._use_trigger(ctx)
        view = self._new_view(ctx.require("view"), "modal", view_id=new_id("V"))
        self.views[view["id"]] = view
        return {"view": copy.deepcopy(view)}

    def _views_update(self, ctx: _Ctx) -> JSON:
        view_id = ctx.get("view_id")
        external_id = ctx.get("external_id")
        if view_id is None and external_id is None:
            raise _invalid_arguments("either view_id or external_id is required")
        current = self.views.get(str(view_id)) if view_id is not None else None
        if external_id is not None:
            current = next(
                (v for v in self.views.values() if v["external_id"] == external_id), None
            )
        if current is None:
            raise _ApiError("not_found")
        expected_hash = ctx.get("hash")
        if expected_hash is not None and expected_hash != current["hash"]:
            raise _ApiError("hash_conflict")
        view = self._new_view(ctx.require("view"), "modal", view_id=current["id"])
        view["previous_view_id"] = current["previous_view_id"]
        view["root_view_id"] = current["root_view_id"]
        self.views[view["id"]] = view
        return {"view": copy.deepcopy(view)}

    def _views_publish(self, ctx: _Ctx) -> JSON:
        user_id = str(ctx.require("user_id"))
        if user_id not in self.users:
            raise _ApiError("user_not_found")
        current = self.home_views.get(user_id)
        expected_hash = ctx.get("hash")
        if current is not None and expected_hash is not None and expected_hash != current["hash"]:
            raise _ApiError("hash_conflict")
        view = self._new_view(ctx.require("view"), "home", view_id=f"VH{user_id}")
        self.home_views[user_id] = view
        return {"view": copy.deepcopy(view)}

    def _team_info(self, ctx: _Ctx) -> JSON:
        icon = "https://a.slack-edge.com/80588/img/avatars-teams/ava_0001"
        return {
            "team": {
                "id": self.team_id,
                "name": self.team_name,
                "url": f"https://{self.team_domain}.slack.com/",
                "domain": self.team_domain,
                "email_domain": "",
                "icon": {
                    "image_default": True,
                    **{f"image_{size}": f"{icon}-{size}.png" for size in (34, 44, 68, 88, 102)},
                },
                "avatar_base_url": "https://ca.slack-edge.com/",
                "is_verified": False,
            }
        }

    def _oauth_v2_access(self, ctx: _Ctx) -> JSON:
        client_id, client_secret = ctx.get("client_id"), ctx.get("client_secret")
        scheme, _, credentials = ctx.authorization.partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode()
            except (ValueError, binascii.Error):
                raise _ApiError("invalid_client_id") from None
            client_id, _, client_secret = decoded.partition(":")
        if client_id != self.client_id:
            raise _ApiError("invalid_client_id")
        if client_secret != self.client_secret:
            raise _ApiError("bad_client_secret")
        if ctx.get("grant_type") == "refresh_token":
            return self._refresh_grant(ctx)
        grant = self._oauth_codes.pop(str(ctx.get("code", "")), None)
        if grant is None:
            raise _ApiError("invalid_code")
        user_id, scope = grant
        return {
            "app_id": self.app_id,
            "authed_user": {"id": user_id},
            **self._issue_bot_token(scope),
            "bot_user_id": self.bot_user_id,
            "team": {"id": self.team_id, "name": self.team_name},
            "enterprise": None,
            "is_enterprise_install": False,
        }

    # --- helpers: channels and messages -------------------------------------------------------

    def _user(self, user_id: str) -> JSON:
        if user_id not in self.users:
            raise KeyError(f"no user {user_id} in this workspace")
        return self.users[user_id]

    def _next_ts(self) -> str:
        """Slack-style message timestamps: seconds.microseconds, strictly increasing."""
        micros = max(int(self.clock() * 1_000_000), self._last_ts + 1)
        self._last_ts = micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _dm_id(self, user_ids: list[str]) -> str:
        if len(user_ids) == 1:
            return f"D{user_ids[0]}"
        digest = hashlib.sha1(
            ",".join(sorted(user_ids)).encode(), usedforsecurity=False
        ).hexdigest()
        return f"G{digest[:10].upper()}"

    def _open_dm(self, user_ids: list[str]) -> JSON:
        """The app's DM with one user (D + user id), or a group DM with several; created once."""
        channel_id = self._dm_id(user_ids)
        if channel_id in self.channels:
            return self.channels[channel_id]
        channel = self._dm_object(channel_id, user_ids)
        self.channels[channel_id] = channel
        self._messages[channel_id] = []
        self._members[channel_id] = {self.bot_user_id, *user_ids}
        return channel

    def _dm_object(self, channel_id: str, user_ids: list[str]) -> JSON:
        """A DM as conversations.open shows it: an `im` with one user carries that user, an
        `mpim` with several a name made of theirs."""
        is_im = len(user_ids) == 1
        now = int(self.clock())
        names = "--".join(self.users[u]["name"] for u in user_ids)
        channel: JSON = {
            "id": channel_id,
            **({} if is_im else {"name": f"mpdm-{names}-1"}),
            "created": now,
            "is_archived": False,
            "is_im": is_im,
            "is_mpim": not is_im,
            "is_channel": False,
            "is_group": False,
            "is_private": True,
            "is_org_shared": False,
            "context_team_id": self.team_id,
            "updated": now * 1000,
        }
        if is_im:
            user_id = user_ids[0]
            channel.update(user=user_id, is_user_deleted=self.users[user_id]["deleted"], priority=0)
        return channel

    def _conversation_for(self, user_id: str, channel: str) -> str:
        """Where a person writes: a known channel, or their DM with the app."""
        if channel in self.channels:
            return channel
        if channel in (f"D{user_id}", user_id):
            return self._open_dm([user_id])["id"]
        raise KeyError(f"no channel {channel} in this workspace")

    def _channel_type(self, channel_id: str) -> str:
        channel = self.channels.get(channel_id)
        if channel is None:
            return {"D": "im", "G": "group"}.get(channel_id[:1], "channel")
        if channel["is_im"]:
            return "im"
        if channel["is_mpim"]:
            return "mpim"
        return "group" if channel["is_private"] else "channel"

    def _readable_channel(self, value: Any, *, public_ok: bool = False) -> str:
        """Resolve a channel argument for reading: unknown, or private without the app, is
        `channel_not_found`; a public channel without the app is `not_in_channel` unless
        `public_ok` (metadata anyone in the workspace may see)."""
        if value is None or str(value) not in self.channels:
            raise _ApiError("channel_not_found")
        return self._check_membership(str(value), public_ok=public_ok)

    def _postable_channel(self, ctx: _Ctx) -> str:
        """chat.* accept a channel id, a channel name, or a user id (the DM with that user)."""
        value = ctx.get("channel")
        if value is None:
            raise _ApiError("channel_not_found")
        value = str(value)
        if value in self.channels:
            return self._check_membership(value)
        if value in self.users and value[:1] in ("U", "W"):
            return self._open_dm([value])["id"]
        name = value.removeprefix("#")
        for channel_id, channel in self.channels.items():
            if channel.get("name") == name:
                return self._check_membership(channel_id)
        raise _ApiError("channel_not_found")

    def _check_membership(self, channel_id: str, *, public_ok: bool = False) -> str:
        channel = self.channels[channel_id]
        if self.bot_user_id in self._members[channel_id] or (
            public_ok and not channel["is_private"]
        ):
            return channel_id
        raise _ApiError("channel_not_found" if channel["is_private"] else "not_in_channel")

    def _message_content(self, ctx: _Ctx) -> JSON:
        """The stored fields of a posted message, validated like Slack does."""
        content: JSON = {"text": ctx.params.get("text") or ""}
        for key in ("blocks", "attachments", "metadata"):
            if ctx.params.get(key) not in (None, "", []):
                content[key] = copy.deepcopy(ctx.params[key])
        if not content["text"] and "blocks" not in content and "attachments" not in content:
            raise _ApiError("no_text")
        self._check_content(content)
        return content

    def _check_content(self, content: JSON) -> None:
        if len(str(content.get("text", ""))) > _MAX_TEXT:
            raise _ApiError("msg_too_long")
        blocks = content.get("blocks")
        if blocks is None:
            return
        if not isinstance(blocks, list) or not all(
            isinstance(b, dict) and isinstance(b.get("type"), str) for b in blocks
        ):
            raise _ApiError("invalid_blocks_format")
        if len(blocks) > _MAX_BLOCKS:
            raise _ApiError("invalid_blocks", errors=[f"must contain at most {_MAX_BLOCKS} blocks"])
        for block in blocks:
            block.setdefault(
                "block_id", "".join(secrets.choice(string.ascii_letters) for _ in range(5))
            )

    def _authored(self, user_id: str) -> JSON:
        """The authorship fields of a message by `user_id` (a bot's carry its bot profile)."""
        user = self.users[user_id]
        message: JSON = {"type": "message", "user": user_id}
        if user["is_bot"]:
            profile = user["profile"]
            message.update(
                bot_id=profile["bot_id"],
                app_id=profile["api_app_id"],
                bot_profile={
                    "id": profile["bot_id"],
                    "app_id": profile["api_app_id"],
                    "name": user["name"],
                    "icons": {"image_48": profile["image_48"]},
                    "deleted": False,
                    "updated": user["updated"],
                    "team_id": self.team_id,
                },
            )
        message["team"] = self.team_id
        return message

    def _insert(self, channel_id: str, message: JSON, thread_ts: str | None = None) -> JSON:
        """Store a new message with a fresh ts (unless it has one), threading it under
        `thread_ts` (or its own thread_ts). A thread_ts that is not a parent message is accepted
        and goes nowhere visible, which is what Slack does with it."""
        message.setdefault("ts", self._next_ts())
        thread_ts = thread_ts or message.get("thread_ts")
        if thread_ts:
            message["thread_ts"] = thread_ts
            parent = self._find(channel_id, thread_ts)
            if parent is not None and parent.get("thread_ts", thread_ts) == thread_ts:
                message["parent_user_id"] = parent.get("user")
                self._messages[channel_id].append(message)
                self._refresh_thread(channel_id, thread_ts)
                return message
        self._messages[channel_id].append(message)
        return message

    def _refresh_thread(self, channel_id: str, thread_ts: str) -> None:
        parent = self._find(channel_id, thread_ts)
        if parent is None:
            return
        replies = self._thread(channel_id, thread_ts)[1:]
        for key in ("reply_count", "reply_users", "reply_users_count", "latest_reply"):
            parent.pop(key, None)
        if not replies:
            parent.pop("thread_ts", None)
            return
        reply_users = list(dict.fromkeys(r.get("user") for r in replies))
        parent.update(
            thread_ts=thread_ts,
            reply_count=len(replies),
            reply_users=reply_users[:5],
            reply_users_count=len(reply_users),
            latest_reply=replies[-1]["ts"],
        )

    def _thread(self, channel_id: str, thread_ts: str) -> list[JSON]:
        return [
            m
            for m in self._messages.get(channel_id, [])
            if m["ts"] == thread_ts or m.get("thread_ts") == thread_ts
        ]

    @staticmethod
    def _is_top_level(message: JSON) -> bool:
        thread_ts = message.get("thread_ts")
        return thread_ts in (None, message["ts"]) or message.get("subtype") == "thread_broadcast"

    def _latest_top_level(self, channel_id: str) -> str:
        top = [m for m in self._messages[channel_id] if self._is_top_level(m)]
        if not top:
            raise KeyError(f"no message to reply to in {channel_id}")
        return str(top[-1]["ts"])

    def _find(self, channel_id: str, ts: str | None) -> JSON | None:
        return next((m for m in self._messages.get(channel_id, []) if m["ts"] == ts), None)

    def _named_message(
        self, ctx: _Ctx, *, ts_field: str = "ts", not_found: str = "message_not_found"
    ) -> tuple[str, str, JSON]:
        """The channel id, ts and stored message a call names by `channel` and `ts_field`."""
        channel_id = self._readable_channel(ctx.get("channel"))
        ts = str(ctx.require(ts_field))
        message = self._find(channel_id, ts)
        if message is None:
            raise _ApiError(not_found)
        return channel_id, ts, message

    def _callers_message(self, ctx: _Ctx, not_theirs: str) -> tuple[str, str, JSON]:
        """As `_named_message`, for a call that changes the message: only its author may,
        other callers get the error `not_theirs`."""
        channel_id, ts, message = self._named_message(ctx)
        if message.get("user") != ctx.caller:
            raise _ApiError(not_theirs)
        return channel_id, ts, message

    def _stored_message(self, channel_id: str, ts: str) -> JSON:
        """The message at `ts` for a person's action (a KeyError, answered 400, if none)."""
        message = self._find(channel_id, ts)
        if message is None:
            raise KeyError(f"no message {ts} in {channel_id}")
        return message

    def _own_message(self, channel: str, ts: str, user_id: str) -> JSON:
        message = self._stored_message(channel, ts)
        if message.get("user") != user_id:
            raise ValueError(f"message {ts} was not written by {user_id}")
        return message

    def _remove(self, channel_id: str, ts: str) -> JSON:
        """Delete a message; a parent with replies leaves a tombstone, as in Slack."""
        message = self._stored_message(channel_id, ts)
        previous = copy.deepcopy(message)
        if message.get("reply_count"):
            kept = {k: message[k] for k in _THREAD_FIELDS if k in message}
            message.clear()
            message.update(
                type="message",
                subtype="tombstone",
                text="This message was deleted.",
                user="USLACKBOT",
                hidden=True,
                ts=ts,
                **kept,
            )
        else:
            self._messages[channel_id].remove(message)
            if message.get("thread_ts") not in (None, ts):
                self._refresh_thread(channel_id, message["thread_ts"])
        return previous

    def _edited(self, channel_id: str, message: JSON, previous: JSON, editor: str) -> JSON:
        """Stamp the changed `message` as edited by `editor` now; returns the `message_changed`
        event, which carries the message as it was (`previous`) and as it is."""
        ts = self._next_ts()
        message["edited"] = {"user": editor, "ts": ts}
        return self._message_subtype_event(
            "message_changed",
            ts,
            message=copy.deepcopy(message),
            previous_message=previous,
            channel=channel_id,
            hidden=True,
        )

    def _deleted_event(self, channel_id: str, previous: JSON) -> JSON:
        return self._message_subtype_event(
            "message_deleted",
            self._next_ts(),
            previous_message=previous,
            channel=channel_id,
            hidden=True,
            deleted_ts=previous["ts"],
        )

    def _message_subtype_event(self, subtype: str, ts: str, **fields: Any) -> JSON:
        """A `message` event about an existing message (`fields` between the subtype and the
        timestamps, in Slack's order; `channel` among them)."""
        return {
            "type": "message",
            "subtype": subtype,
            **fields,
            "ts": ts,
            "event_ts": ts,
            "channel_type": self._channel_type(fields["channel"]),
        }

    # --- helpers: availability, views, limits -----------------------------------------------

    def _in_dnd(self, user_id: str) -> bool:
        dnd = self._dnd[user_id]
        return dnd.enabled and dnd.next_start <= self.clock() < dnd.next_end

    def _dnd_status(self, user_id: str) -> JSON:
        dnd = self._dnd[user_id]
        return {
            "dnd_enabled": dnd.enabled,
            "next_dnd_start_ts": dnd.next_start,
            "next_dnd_end_ts": dnd.next_end,
        }

    def _require_paid_plan(self) -> None:
        if not self.paid_plan:
            raise _ApiError("plan_upgrade_required")

    def _use_trigger(self, ctx: _Ctx) -> None:
        trigger_id = str(ctx.require("trigger_id"))
        if trigger_id in self._used_triggers:
            raise _ApiError("exchanged_trigger_id")
        self._used_triggers.add(trigger_id)

    def _new_view(self, raw: Any, default_type: str, *, view_id: str) -> JSON:
        """Validate a view argument the way Slack's view validation reports it."""
        if not isinstance(raw, dict):
            raise _invalid_arguments("failed to match all allowed schemas [json-pointer:/view]")
        kind = raw.get("type", default_type)
        if kind != default_type:
            raise _invalid_arguments(f"must be '{default_type}' [json-pointer:/view/type]")
        problems = []
        title = raw.get("title")
        if kind == "modal":
            if not isinstance(title, dict) or title.get("type") != "plain_text":
                problems.append("missing required field: title [json-pointer:/view/title]")
            elif len(str(title.get("text", ""))) > 24:
                problems.append("must be less than 25 characters [json-pointer:/view/title/text]")
            has_input = any(b.get("type") == "input" for b in raw.get("blocks") or [])
            if has_input and not raw.get("submit"):
                problems.append("must provide a submit button [json-pointer:/view/submit]")
        blocks = raw.get("blocks")
        if not isinstance(blocks, list):
            problems.append("missing required field: blocks [json-pointer:/view/blocks]")
        elif len(blocks) > 100:
            problems.append("must contain at most 100 items [json-pointer:/view/blocks]")
        if len(str(raw.get("private_metadata", ""))) > 3000:
            problems.append("must be at most 3000 characters [json-pointer:/view/private_metadata]")
        if problems:
            raise _invalid_arguments(*problems)
        view: JSON = {
            "id": view_id,
            "team_id": self.team_id,
            "type": kind,
            "blocks": copy.deepcopy(blocks),
            "private_metadata": raw.get("private_metadata", ""),
            "callback_id": raw.get("callback_id", ""),
            "state": {"values": {}},
            "hash": f"{int(self.clock())}.{secrets.token_hex(4)}",
            "title": raw.get("title"),
            "clear_on_close": bool(raw.get("clear_on_close", False)),
            "notify_on_close": bool(raw.get("notify_on_close", False)),
            "close": raw.get("close"),
            "submit": raw.get("submit"),
            "previous_view_id": None,
            "root_view_id": view_id,
            "app_id": self.app_id,
            "external_id": raw.get("external_id", ""),
            "app_installed_team_id": self.team_id,
            "bot_id": self.bot_id,
        }
        return view

    def _rate_limited(self, channel: str) -> int | None:
        """Seconds to wait (for `Retry-After`) if this post is over the per-channel limit."""
        limit = self._rate_limit
        if limit is None:
            return None
        now = time.monotonic()
        bucket = limit.buckets.setdefault(channel, _Bucket(float(limit.burst), now))
        bucket.tokens = min(limit.burst, bucket.tokens + (now - bucket.updated) * limit.per_second)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return None
        return max(1, math.ceil((1 - bucket.tokens) / limit.per_second))

    # --- helpers: delivering events ---------------------------------------------------------

    def _echo(self, event: JSON, channel_id: str) -> None:
        """Queue an event caused by the app itself, delivered once its API call is answered."""
        if self.echo_bot_messages and self._sender is not None:
            event.setdefault("channel_type", self._channel_type(channel_id))
            self._outbox.append(copy.deepcopy(event))

    async def _flush_outbox(self) -> None:
        while self._outbox:
            event = self._outbox.pop(0)
            with contextlib.suppress(httpx.HTTPError):  # recorded as a Delivery with no status
                await self._deliver(self.sender, event)

    async def _deliver(self, sender: SlackRequestSender, event: JSON) -> JSON:
        envelope = sender.envelope_for(event)
        try:
            response = await sender.send_envelope(envelope)
        except httpx.HTTPError:
            self.deliveries.append(Delivery(envelope, None))
            raise
        self.deliveries.append(Delivery(envelope, response.status_code))
        return envelope


_THREAD_FIELDS = ("thread_ts", "reply_count", "reply_users", "reply_users_count", "latest_reply")


def _button(message: JSON, action_id: str) -> tuple[str, JSON] | None:
    """The block id and the button `action_id` in the `actions` blocks of a message."""
    for block in message.get("blocks") or []:
        if not isinstance(block, dict) or block.get("type") != "actions":
            continue
        for element in block.get("elements") or []:
            if (
                isinstance(element, dict)
                and element.get("type") == "button"
                and element.get("action_id") == action_id
            ):
                return str(block.get("block_id", "")), element
    return None


async def _send_interaction(sender: SlackRequestSender, payload: JSON) -> None:
    """Deliver an interaction over HTTP or the Socket Mode link; `_SandboxError` (502) when the
    app is unreachable or refuses it (Slack shows the clicker a warning then)."""
    if isinstance(sender, SocketModeSender):
        await sender.server.ack(await sender.server.send("interactive", payload))
        return
    try:
        response = await sender.send_interaction(payload)
    except httpx.HTTPError as error:
        raise _SandboxError(502, f"the app did not answer: {error!r}") from None
    if not response.is_success:
        raise _SandboxError(502, f"the app answered HTTP {response.status_code}")


def _receipt(envelope: JSON) -> JSON:
    """What the sandbox control API answers for a person's action: the event's ts and id."""
    return {"ts": envelope["event"]["ts"], "event_id": envelope["event_id"]}


def _without(mapping: Mapping[str, Any], *keys: str) -> JSON:
    return {k: v for k, v in mapping.items() if k not in keys}


def _tz_info(tz: str) -> tuple[int, str]:
    try:
        now = datetime.now(ZoneInfo(tz))
    except (ZoneInfoNotFoundError, ValueError):
        return 0, tz
    offset = now.utcoffset()
    return int(offset.total_seconds()) if offset else 0, now.tzname() or tz


def _take(queue: dict[str, list[_P]], method: str) -> _P | None:
    """Use up one of the pending faults or stalls for `method`, if any."""
    pending = queue.get(method)
    if not pending:
        return None
    item = pending[0]
    item.times -= 1
    if item.times <= 0:
        pending.pop(0)
    return item


async def _read_params(request: Request) -> JSON:
    """Arguments from the query string and the body, form-encoded or JSON, as Slack reads them."""
    params: JSON = dict(request.query_params)
    raw = await request.body()
    content_type = request.headers.get("content-type", "")
    if raw and content_type.startswith("application/json"):
        try:
            body = json.loads(raw)
        except ValueError:
            body = {}
        if isinstance(body, dict):
            params.update(body)
    elif raw:
        params.update(parse_qsl(raw.decode(), keep_blank_values=True))
    for key in _JSON_FIELDS:
        if key in params:
            params[key] = _maybe_json(params[key])
    return params


def _bearer(request: Request) -> str | None:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip() or None


async def _sleep_unless_disconnected(request: Request, seconds: float) -> None:
    """Sleep, but stop as soon as the client hangs up (e.g. its timeout fired)."""

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    sleeper = asyncio.ensure_future(asyncio.sleep(seconds))
    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({sleeper, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sleeper, watcher):
            task.cancel()
        await asyncio.gather(sleeper, watcher, return_exceptions=True)


async def _sandbox_page(request: Request) -> Response:
    return FileResponse(_SANDBOX_PAGE, headers={"Cache-Control": "no-cache"})


def _json(body: JSON, status: int = 200) -> Response:
    return Response(json.dumps(body), status, media_type="application/json; charset=utf-8")
