"""The Slack Web API as the services need it, over the real `slack_sdk` async client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

# Errors that no retry can fix: the delivery is marked failed at once.
PERMANENT_ERRORS = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "user_not_found",
        "user_disabled",
        "cannot_dm_bot",
        "invalid_auth",
        "account_inactive",
        "token_revoked",
        "not_authed",
        "missing_scope",
        "msg_too_long",
        "invalid_blocks",
        "no_text",
    }
)


def create_client(token: str | None, base_url: str) -> AsyncWebClient:
    """A client that honours `Retry-After` on 429 (twice) besides slack_sdk's connection retries."""
    client = AsyncWebClient(token=token, base_url=base_url)
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=2))
    return client


def slack_error(exc: SlackApiError) -> str:
    """Slack's error name (`channel_not_found`, `ratelimited`, ...) or the HTTP status."""
    data = exc.response.data if exc.response is not None else None
    if isinstance(data, dict) and data.get("error"):
        return str(data["error"])
    status = exc.response.status_code if exc.response is not None else "?"
    return f"http_{status}"


@dataclass(frozen=True)
class UserProfile:
    user_id: str
    name: str
    avatar_url: str | None
    is_bot: bool
    deleted: bool


class SlackGateway:
    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

    async def team_id(self) -> str:
        response = await self.client.auth_test()
        return str(response["team_id"])

    async def open_dm(self, user_id: str) -> str:
        response = await self.client.conversations_open(users=user_id)
        return str(response["channel"]["id"])

    async def post_message(
        self,
        channel: str,
        *,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
    ) -> str:
        """Post without Slack's name linking or unfurls; returns the message's `ts`."""
        response = await self.client.chat_postMessage(
            channel=channel,
            text=text,
            blocks=blocks,
            thread_ts=thread_ts,
            mrkdwn=False,
            link_names=False,
            unfurl_links=False,
            unfurl_media=False,
        )
        return str(response["ts"])

    async def presence(self, user_id: str) -> str:
        response = await self.client.users_getPresence(user=user_id)
        return str(response.get("presence") or "unknown")

    async def profile(self, user_id: str) -> UserProfile:
        response = await self.client.users_info(user=user_id)
        user = response["user"]
        profile = user.get("profile") or {}
        name = (
            profile.get("display_name")
            or profile.get("real_name")
            or user.get("real_name")
            or user.get("name")
            or user_id
        )
        return UserProfile(
            user_id=user_id,
            name=str(name),
            avatar_url=profile.get("image_192") or profile.get("image_72"),
            is_bot=bool(user.get("is_bot")),
            deleted=bool(user.get("deleted")),
        )
