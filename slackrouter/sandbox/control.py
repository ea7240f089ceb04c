"""Breaking the fake Slack on command, for tests that run it as a separate process.

`controlled(slack)` serves `slack.asgi` unchanged and adds a JSON control API (bad input answers
400):
- `POST /sandbox/fail` `{method, status?, error?, retry_after?, times?}`: `FakeSlack.fail`, e.g.
  `{"method": "chat.postMessage", "status": 429, "retry_after": 2, "times": 5}`
- `POST /sandbox/stall` `{method, seconds, times?}`: `FakeSlack.stall`
- `POST /sandbox/rate-limit` `{per_second, burst?}`: `FakeSlack.rate_limit_per_channel`
  (`per_second: null` turns it off)
- `POST /sandbox/outage` `{method, mode}`: from now on, until `mode` is `"none"`, every call to
  `method` is answered as `mode` says:
  - `"error"`: HTTP 500 `internal_error`, and nothing is done (Slack is down);
  - `"hold"`: held until the outage ends, then done and answered (Slack stalls); a call whose
    client gives up waiting first is never done;
  - `"lost_answer"`: done, then answered HTTP 500 `internal_error`: Slack's documented "some
    aspect of the operation may have succeeded", the uncertain failure.
- `POST /sandbox/events` `{url, signing_secret?}`: where people's messages are delivered as
  events from now on (another replica of the app, say)
- `GET /sandbox/posts`: every message the app's bot has in the workspace now, oldest first:
  `{"posts": [{channel, ts, thread_ts, text}]}`
- `GET /sandbox/outages`: what the outages did so far: `{"refused": {method: calls answered
  with an error}, "held": {method: calls held}, "holding": {method: calls held right now}}`
- `GET /sandbox/calls?method=...`: the Web API calls the workspace answered (outage refusals
  excluded): `{"calls": [{method, status, params, response}]}`
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from slackrouter.sandbox.fake_slack import FakeSlack

OutageMode = Literal["error", "hold", "lost_answer"]
OUTAGE_MODES: tuple[OutageMode, ...] = ("error", "hold", "lost_answer")
_INTERNAL_ERROR = json.dumps({"ok": False, "error": "internal_error"}).encode()


@dataclass
class Outages:
    """The methods that are down now, and how; `refused` counts the calls answered with an
    error while down, `held` the calls held, `holding` those still held."""

    modes: dict[str, OutageMode] = field(default_factory=dict)
    refused: Counter[str] = field(default_factory=Counter)
    held: Counter[str] = field(default_factory=Counter)
    holding: Counter[str] = field(default_factory=Counter)
    _lifted: dict[str, asyncio.Event] = field(default_factory=dict)

    def start(self, method: str, mode: OutageMode) -> None:
        self.end(method)
        self.modes[method] = mode
        self._lifted[method] = asyncio.Event()

    def end(self, method: str) -> None:
        self.modes.pop(method, None)
        lifted = self._lifted.pop(method, None)
        if lifted is not None:
            lifted.set()

    async def hold(self, method: str, receive: Receive) -> bool:
        """Wait until the outage of `method` ends (True) or the client hangs up (False)."""
        lifted = self._lifted.get(method)
        if lifted is None:
            return True

        async def hung_up() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        ended = asyncio.ensure_future(lifted.wait())
        gone = asyncio.ensure_future(hung_up())
        self.held[method] += 1
        self.holding[method] += 1
        try:
            finished, _ = await asyncio.wait({ended, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.holding[method] -= 1
            for task in (ended, gone):
                task.cancel()
            await asyncio.gather(ended, gone, return_exceptions=True)
        return gone not in finished


class _OutageGate:
    """ASGI middleware in front of the Web API: applies the outage of the called method."""

    def __init__(self, app: ASGIApp, outages: Outages) -> None:
        self.app = app
        self.outages = outages

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        method = path.removeprefix("/api/") if path.startswith("/api/") else ""
        mode = self.outages.modes.get(method)
        if mode is None:
            await self.app(scope, receive, send)
        elif mode == "error":
            self.outages.refused[method] += 1
            await _internal_error(send)
        elif mode == "hold":
            replay = await _buffered(receive)
            if await self.outages.hold(method, receive):
                await self.app(scope, replay, send)
        else:
            await self.app(scope, receive, _discard)
            self.outages.refused[method] += 1
            await _internal_error(send)


async def _buffered(receive: Receive) -> Receive:
    """Read the whole request body now; the returned `receive` replays it (and then waits
    forever: the Web API reads a body once and never waits for a disconnect)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    pending: list[Message] = [{"type": "http.request", "body": b"".join(chunks)}]

    async def replay() -> Message:
        if pending:
            return pending.pop()
        await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    return replay


async def _discard(message: Message) -> None:
    """Swallow an answer that is never to reach the client."""


async def _internal_error(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [
                (b"content-type", b"application/json; charset=utf-8"),
                (b"content-length", str(len(_INTERNAL_ERROR)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _INTERNAL_ERROR})


def _control(action: Callable[[dict[str, Any], Request], None]) -> Callable[..., Any]:
    async def endpoint(request: Request) -> Response:
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise TypeError("expected a JSON object")
            action(body, request)
        except (KeyError, ValueError, TypeError) as error:
            return JSONResponse({"ok": False, "error": f"{type(error).__name__}: {error}"}, 400)
        return JSONResponse({"ok": True})

    return endpoint


def controlled(slack: FakeSlack, *, signing_secret: str) -> Starlette:
    """`slack.asgi` behind an outage gate, with the control API described in the module doc.
    `signing_secret` signs the events sent to the URL given to `POST /sandbox/events`."""
    outages = Outages()

    def fail(body: dict[str, Any], _: Request) -> None:
        slack.fail(
            str(body["method"]),
            error=body.get("error"),
            status=body.get("status"),
            retry_after=int(body.get("retry_after", 1)),
            times=int(body.get("times", 1)),
        )

    def stall(body: dict[str, Any], _: Request) -> None:
        slack.stall(str(body["method"]), float(body["seconds"]), times=int(body.get("times", 1)))

    def rate_limit(body: dict[str, Any], _: Request) -> None:
        per_second = body["per_second"]
        slack.rate_limit_per_channel(
            None if per_second is None else float(per_second), burst=int(body.get("burst", 3))
        )

    def outage(body: dict[str, Any], _: Request) -> None:
        method, mode = str(body["method"]), body["mode"]
        if mode == "none":
            outages.end(method)
        elif mode in OUTAGE_MODES:
            outages.start(method, cast(OutageMode, mode))
        else:
            raise ValueError(f"mode is one of {', '.join(OUTAGE_MODES)} or none, not {mode!r}")

    def events(body: dict[str, Any], request: Request) -> None:
        slack.configure_events(
            str(body["url"]),
            str(body.get("signing_secret") or signing_secret),
            hooks_url=f"{request.base_url}hooks",
        )

    async def posts(_: Request) -> Response:
        found = [
            {
                "channel": channel,
                "ts": message["ts"],
                "thread_ts": message.get("thread_ts"),
                "text": message.get("text", ""),
            }
            for channel in slack.channels
            for message in slack.messages_in(channel)
            if message.get("user") == slack.bot_user_id
        ]
        found.sort(key=lambda post: float(post["ts"]))
        return JSONResponse({"posts": found})

    async def outage_counts(_: Request) -> Response:
        return JSONResponse(
            {
                "refused": dict(outages.refused),
                "held": dict(outages.held),
                "holding": dict(outages.holding),
            }
        )

    async def calls(request: Request) -> Response:
        method = request.query_params.get("method")
        return JSONResponse(
            {
                "calls": [
                    {
                        "method": call.method,
                        "status": call.status,
                        "params": call.params,
                        "response": call.response,
                    }
                    for call in slack.calls
                    if method is None or call.method == method
                ]
            }
        )

    routes = [
        Route("/sandbox/fail", _control(fail), methods=["POST"]),
        Route("/sandbox/stall", _control(stall), methods=["POST"]),
        Route("/sandbox/rate-limit", _control(rate_limit), methods=["POST"]),
        Route("/sandbox/outage", _control(outage), methods=["POST"]),
        Route("/sandbox/events", _control(events), methods=["POST"]),
        Route("/sandbox/posts", posts, methods=["GET"]),
        Route("/sandbox/outages", outage_counts, methods=["GET"]),
        Route("/sandbox/calls", calls, methods=["GET"]),
        Mount("/", app=_OutageGate(slack.asgi, outages)),
    ]
    return Starlette(routes=routes)
