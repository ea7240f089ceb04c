"""The app-level parts of the fake Slack (mixed into `FakeSlack`): what Slack knows about the app
rather than the workspace.

- Scopes: every Web API answer to a token carries `x-oauth-scopes`, the scopes it was granted, as
  Slack's do (`slackrouter check` reads it from auth.test). `token_scopes` holds them per token;
  a token not listed has `DEFAULT_BOT_SCOPES`.
- Socket Mode: `add_app_token(token)` makes an app-level token (`xapp-…`);
  `apps.connections.open` with it answers `socket_mode_url` (see `sandbox.socket_mode`).
- Token rotation: with `token_rotation` on, `oauth.v2.access` issues expiring bot tokens
  (`xoxe.xoxb-…`, `expires_in` = `token_lifetime` seconds) with a refresh token, and exchanges a
  refresh token (`grant_type=refresh_token`) for a new pair; a refresh token works once.
"""

from __future__ import annotations

import itertools
import secrets
from typing import TYPE_CHECKING, Any

from slackrouter.sandbox.socket_mode import SocketModeSender

if TYPE_CHECKING:
    from slackrouter.sandbox.slack_requests import SlackRequestSender
    from slackrouter.sandbox.socket_mode import SocketModeServer

JSON = dict[str, Any]

_counter = itertools.count(1)


class FakeSlackAppMixin:
    # Set by FakeSlack.__init__ before `_init_app`.
    team_id: str
    app_id: str
    bot_user_id: str
    tokens: dict[str, str]
    _sender: SlackRequestSender | None

    def _init_app(self, default_scopes: str) -> None:
        self.default_scopes = default_scopes
        self.token_scopes: dict[str, str] = {}
        self.socket_mode_url: str | None = None
        """Where `apps.connections.open` sends the app (a `ws://` URL)."""
        self.token_rotation = False
        self.token_lifetime = 12 * 3600
        self._refresh_tokens: dict[str, str] = {}

    def add_app_token(self, token: str) -> None:
        """Make `token` a valid app-level token (Socket Mode's `connections:write`)."""
        self.tokens[token] = self.app_id
        self.token_scopes[token] = "connections:write"

    def use_socket_mode(self, server: SocketModeServer, app_token: str) -> None:
        """Deliver events through `server` (a Socket Mode link) instead of HTTP: the app opens
        the link with `app_token`, and `user_posts` & co. send envelopes and wait for acks."""
        self.add_app_token(app_token)
        self.socket_mode_url = server.url
        self._sender = SocketModeSender(server, self.team_id, self.app_id, self.bot_user_id)

    def owns_refresh_token(self, refresh_token: str) -> bool:
        return refresh_token in self._refresh_tokens

    def scopes_of(self, token: str) -> str:
        return self.token_scopes.get(token, self.default_scopes)

    def _scope_headers(self, token: str | None) -> dict[str, str]:
        if not token or token not in self.tokens:
            return {}
        return {"x-oauth-scopes": self.scopes_of(token)}

    def _apps_connections_open(self, ctx: Any) -> JSON:
        from slackrouter.sandbox.fake_slack import _ApiError

        if ctx.caller != self.app_id:
            raise _ApiError("not_allowed_token_type")
        if self.socket_mode_url is None:
            raise _ApiError("socket_mode_not_enabled")
        return {"url": self.socket_mode_url}

    def _issue_bot_token(self, scope: str) -> JSON:
        """A new bot token with `scope`; expiring, with a refresh token, under rotation."""
        serial = next(_counter)
        token = f"xoxb-{self.team_id}-{serial}-{secrets.token_urlsafe(12)}"
        if self.token_rotation:
            token = "xoxe." + token
        self.tokens[token] = self.bot_user_id
        self.token_scopes[token] = scope
        answer: JSON = {"access_token": token, "scope": scope, "token_type": "bot"}
        if self.token_rotation:
            refresh = f"xoxe-1-{self.team_id}-{secrets.token_urlsafe(16)}"
            self._refresh_tokens[refresh] = scope
            answer.update(refresh_token=refresh, expires_in=self.token_lifetime)
        return answer

    def _refresh_grant(self, ctx: Any) -> JSON:
        from slackrouter.sandbox.fake_slack import _ApiError

        scope = self._refresh_tokens.pop(str(ctx.get("refresh_token", "")), None)
        if scope is None:
            raise _ApiError("invalid_refresh_token")
        return {
            "app_id": self.app_id,
            "bot_user_id": self.bot_user_id,
            "team": {"id": self.team_id},
            "enterprise": None,
            "is_enterprise_install": False,
            **self._issue_bot_token(scope),
        }
