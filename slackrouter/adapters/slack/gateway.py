"""The Slack Web API as the services need it, over the real `slack_sdk` async client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

DND_BATCH = 50
# Errors of free Slack plans, where user groups do not exist.
PAID_PLAN_ERRORS = frozenset({"paid_teams_only", "plan_upgrade_required", "paid_only"})

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
    email: str | None = None
    is_guest: bool = False


@dataclass(frozen=True)
class SlackUserGroup:
    id: str
    handle: str
    name: str
    members: tuple[str, ...]


def _profile(user: dict[str, Any]) -> UserProfile:
    profile = user.get("profile") or {}
    name = (
        profile.get("display_name")
        or profile.get("real_name")
        or user.get("real_name")
        or user.get("name")
        or user["id"]
    )
    return UserProfile(
        user_id=str(user["id"]),
        name=str(name),
        avatar_url=profile.get("image_192") or profile.get("image_72"),
        is_bot=bool(user.get("is_bot")) or user.get("id") == "USLACKBOT",
        deleted=bool(user.get("deleted")),
        email=profile.get("email"),
        is_guest=bool(user.get("is_restricted") or user.get("is_ultra_restricted")),
    )


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
        return _profile(response["user"])

    async def lookup_by_email(self, email: str) -> UserProfile | None:
        """The workspace member with this email, or None (`users_not_found`)."""
        try:
            response = await self.client.users_lookupByEmail(email=email)
        except SlackApiError as exc:
            if slack_error(exc) == "users_not_found":
                return None
            raise
        return _profile(response["user"])

    async def dnd(self, user_ids: list[str], *, now: float) -> dict[str, bool]:
        """Who is in Do Not Disturb right now, asking `dnd.teamInfo` 50 users at a time."""
        result: dict[str, bool] = {}
        for start in range(0, len(user_ids), DND_BATCH):
            batch = user_ids[start : start + DND_BATCH]
            response = await self.client.dnd_teamInfo(users=",".join(batch))
            for user_id, info in (response.get("users") or {}).items():
                result[user_id] = bool(info.get("dnd_enabled")) and (
                    float(info.get("next_dnd_start_ts") or 0)
                    <= now
                    < float(info.get("next_dnd_end_ts") or 0)
                )
        return result

    async def usergroups(self) -> list[SlackUserGroup]:
        """Enabled user groups with their members; raises SlackApiError on free plans."""
        response = await self.client.usergroups_list(include_users=True)
        return [
            SlackUserGroup(
                id=str(group["id"]),
                handle=str(group.get("handle") or ""),
                name=str(group.get("name") or group.get("handle") or group["id"]),
                members=tuple(group.get("users") or ()),
            )
            for group in response.get("usergroups") or []
            if not group.get("date_delete")
        ]
