"""CORS for the visitor API: websites on any origin call `/v1/` from their visitors' browsers."""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send


class VisitorApiCors:
    """Starlette's CORSMiddleware on `/v1/` only: any origin, since a chatflow's public key is
    public anyway, and no credentials (the widget sends none: the conversation token is its
    key). GET and POST only, so a browser can never call the server-to-server PUT endpoints.
    Other paths (`/slack/events`, `/widget.js`) are passed through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._cors = CORSMiddleware(
            app,
            allow_origins=["*"],
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        visitor_api = scope["type"] == "http" and scope["path"].startswith("/v1/")
        await (self._cors if visitor_api else self._app)(scope, receive, send)
