"""The slack_sdk client, counted: every Web API call's method, outcome and latency go to the
app's metrics (`slackrouter_slack_api_calls`, `slackrouter_slack_api_call_seconds`).

It also keeps one aiohttp session per event loop: without one, slack_sdk opens a new session,
and a new connection (a new TLS handshake with Slack), for every call."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from slackrouter.observability import observe_slack_call


class MeteredWebClient(AsyncWebClient):
    _session_loop: asyncio.AbstractEventLoop | None = None

    async def api_call(self, api_method: str, **kwargs: Any) -> AsyncSlackResponse:  # type: ignore[override]
        self._keep_session()
        started = time.perf_counter()
        outcome = "exception"
        try:
            response = await super().api_call(api_method, **kwargs)
            outcome = "ok"
            return response
        except SlackApiError as exc:
            data = exc.response.data if exc.response is not None else None
            outcome = str(data.get("error")) if isinstance(data, dict) else "error"
            raise
        finally:
            observe_slack_call(api_method, outcome, time.perf_counter() - started)

    def _keep_session(self) -> None:
        loop = asyncio.get_running_loop()
        if self.session is None or self.session.closed or self._session_loop is not loop:
            self.session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                trust_env=self.trust_env_in_session,
            )
            self._session_loop = loop

    async def aclose(self) -> None:
        """Close the kept session (at shutdown)."""
        if self.session is not None and not self.session.closed:
            await self.session.close()
