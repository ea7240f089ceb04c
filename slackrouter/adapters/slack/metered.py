"""The slack_sdk client, counted: every Web API call's method, outcome and latency go to the
app's metrics (`slackrouter_slack_api_calls`, `slackrouter_slack_api_call_seconds`)."""

from __future__ import annotations

import time
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from slackrouter.observability import observe_slack_call


class MeteredWebClient(AsyncWebClient):
    async def api_call(self, api_method: str, **kwargs: Any) -> AsyncSlackResponse:  # type: ignore[override]
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
