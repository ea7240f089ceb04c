"""Several fake workspaces behind one Web API URL, as slack.com serves every workspace.

Each `FakeSlack` is one workspace. `FakeSlackWorkspaces(a, b).asgi` answers `/api/{method}` by
handing the call to the workspace its token belongs to (for `oauth.v2.access`, the workspace that
issued the code or refresh token), and serves Slack's consent page,
`GET /oauth/v2/authorize?client_id=…&scope=…&state=…&redirect_uri=…&team=T…&user=U…`, which
approves at once: `user` (default: the workspace's first person) installs the app in `team`
(default: the first workspace) and is redirected to `redirect_uri?code=…&state=…`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.types import Message, Receive, Scope, Send

from slackrouter.sandbox.fake_slack import FakeSlack


class FakeSlackWorkspaces:
    def __init__(self, *workspaces: FakeSlack) -> None:
        if not workspaces:
            raise ValueError("at least one workspace")
        self.workspaces = {workspace.team_id: workspace for workspace in workspaces}

        async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
            await self._handle(scope, receive, send)

        self.asgi = asgi

    def __getitem__(self, team_id: str) -> FakeSlack:
        return self.workspaces[team_id]

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode()))
        if scope["path"] == "/oauth/v2/authorize":
            await self._authorize(query, send)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
        workspace = self._owner(query | _body_params(headers, body), headers)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await workspace.asgi(scope, replay, send)

    def _owner(self, params: Mapping[str, Any], headers: Mapping[str, str]) -> FakeSlack:
        """The workspace a call is for: by its token, OAuth code or refresh token."""
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        token = credentials.strip() if scheme.lower() == "bearer" else params.get("token")
        code, refresh = str(params.get("code", "")), str(params.get("refresh_token", ""))
        for workspace in self.workspaces.values():
            if token and token in workspace.tokens:
                return workspace
            if code.startswith(f"{workspace.team_id}.") or workspace.owns_refresh_token(refresh):
                return workspace
        return next(iter(self.workspaces.values()))

    async def _authorize(self, query: Mapping[str, str], send: Send) -> None:
        workspace = self.workspaces.get(query.get("team", "")) or next(
            iter(self.workspaces.values())
        )
        user = query.get("user") or next(
            user_id
            for user_id, user in workspace.users.items()
            if not user["is_bot"] and user_id != "USLACKBOT"
        )
        if query.get("client_id") != workspace.client_id or not query.get("redirect_uri"):
            await _respond(send, 400, b"invalid client_id or redirect_uri")
            return
        code = workspace.issue_oauth_code(user, scope=query.get("scope", ""))
        location = query["redirect_uri"] + "?" + urlencode(
            {"code": code, "state": query.get("state", "")}
        )
        await _respond(send, 302, b"", [(b"location", location.encode())])


def _body_params(headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    if not body:
        return {}
    if headers.get("content-type", "").startswith("application/json"):
        try:
            parsed = json.loads(body)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return dict(parse_qsl(body.decode(errors="replace")))


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or []})
    await send({"type": "http.response.body", "body": body})
