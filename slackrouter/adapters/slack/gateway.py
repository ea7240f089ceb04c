"""The Slack Web API as the services need it, over the real `slack_sdk` async client."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from slackrouter.adapters.slack.metered import MeteredWebClient

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
        "not_installed",  # no bot token for the workspace (OAuth: uninstalled or never)
    }
)


# Posts go through the outbox, which reschedules a 429 by its Retry-After: sleeping inside the
# call would stall the delivery worker, and every other channel's posts with it.
OUTBOX_METHODS = ("chat.postMessage", "chat.update")
# Seconds a Web API call may take unless SLACK_CALL_TIMEOUT says otherwise: slack_sdk's, whose
# client then sends a request again once if the connection dropped.
DEFAULT_CALL_TIMEOUT = 30


class RateLimitRetryOutsideOutbox(AsyncRateLimitErrorRetryHandler):
    """slack_sdk's Retry-After handler, for every method but the outbox's posts."""

    async def _can_retry_async(self, *, state: Any, request: Any, **kwargs: Any) -> bool:
        if str(getattr(request, "url", "")).endswith(OUTBOX_METHODS):
            return False
        return await super()._can_retry_async(state=state, request=request, **kwargs)


def create_client(
    token: str | None, base_url: str, timeout: int = DEFAULT_CALL_TIMEOUT
) -> AsyncWebClient:
    """A client that honours `Retry-After` on 429 (twice) besides slack_sdk's connection retries;
    `timeout`: seconds each request may take."""
    client = MeteredWebClient(token=token, base_url=base_url, timeout=timeout)
    client.retry_handlers.append(RateLimitRetryOutsideOutbox(max_retry_count=2))
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
    is_admin: bool = False  # a workspace admin or owner


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
        is_admin=bool(user.get("is_admin") or user.get("is_owner")),
    )


class WorkspaceTokenSource(Protocol):
    """Bot tokens per workspace (OAuth distribution); see `installations.WorkspaceTokens`."""

    async def bot_token(self, team_id: str) -> str: ...

    async def team_ids(self) -> list[str]: ...

    def forget(self, team_id: str) -> None: ...


# With many workspaces: the client of the workspace whose Slack request is being handled.
_REQUEST_CLIENT: ContextVar[AsyncWebClient | None] = ContextVar(
    "slack_request_client", default=None
)


class SlackGateway:
    def __init__(self, client: AsyncWebClient, *, tokens: WorkspaceTokenSource | None = None):
        self._client = client
        self.tokens = tokens
        self._teams: dict[str, SlackGateway] = {}

    @property
    def client(self) -> AsyncWebClient:
        """The client calls go through: with many workspaces and inside a Slack request (see
        `speak_for_request`), the requesting workspace's; otherwise this gateway's own."""
        if self.tokens is not None:
            scoped = _REQUEST_CLIENT.get()
            if scoped is not None:
                return scoped
        return self._client

    @property
    def call_timeout(self) -> int:
        """Seconds each Web API call may take (SLACK_CALL_TIMEOUT), every workspace's alike."""
        return int(self._client.timeout)

    async def speak_for_request(self, team_id: str | None) -> None:
        """For the rest of the current Slack request, calls made through this gateway (not
        only through `for_team`) use the token of workspace `team_id`."""
        if self.tokens is None:
            return
        _REQUEST_CLIENT.set((await self.for_team(team_id)).client if team_id else None)

    @property
    def multi_workspace(self) -> bool:
        return self.tokens is not None

    async def for_team(self, team_id: str) -> SlackGateway:
        """The gateway that speaks for workspace `team_id`. With one bot token, this one; with
        OAuth, one over that workspace's bot token (kept per workspace, its token refreshed
        from the installation store). Raises NotInstalled (`not_installed`) without one."""
        if self.tokens is None:
            return self
        token = await self.tokens.bot_token(team_id)
        gateway = self._teams.get(team_id)
        if gateway is None:
            gateway = SlackGateway(create_client(token, self._client.base_url, self.call_timeout))
            self._teams[team_id] = gateway
        gateway.client.token = token
        return gateway

    async def team_ids(self) -> list[str]:
        """The workspaces the app speaks for: its own, or every installed one."""
        if self.tokens is None:
            return [await self.team_id()]
        return await self.tokens.team_ids()

    async def aclose(self) -> None:
        """Close the clients' kept HTTP sessions (at shutdown)."""
        for client in (self._client, *(g.client for g in self._teams.values())):
            if isinstance(client, MeteredWebClient):
                await client.aclose()

    def forget(self, team_id: str) -> None:
        """The workspace uninstalled the app or revoked its token: drop what is kept for it."""
        self._teams.pop(team_id, None)
        if self.tokens is not None:
            self.tokens.forget(team_id)

    async def team_id(self) -> str:
        response = await self.client.auth_test()
        return str(response["team_id"])

    async def workspace_url(self) -> str:
        """The workspace's address (`https://acme.slack.com/`), the base of its permalinks."""
        response = await self.client.auth_test()
        return str(response["url"])

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
        metadata: dict[str, Any] | None = None,
    ) -> str:
        """Post without Slack's name linking or unfurls; returns the message's `ts`."""
        response = await self.client.chat_postMessage(
            channel=channel,
            text=text,
            blocks=blocks,
            thread_ts=thread_ts,
            metadata=metadata,
            mrkdwn=False,
            link_names=False,
            unfurl_links=False,
            unfurl_media=False,
        )
        return str(response["ts"])

    async def recent_messages(
        self, channel: str, *, thread_ts: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The channel's latest messages (or a thread's), with their metadata."""
        if thread_ts:
            response = await self.client.conversations_replies(
                channel=channel, ts=thread_ts, limit=limit, include_all_metadata=True
            )
        else:
            response = await self.client.conversations_history(
                channel=channel, limit=limit, include_all_metadata=True
            )
        return list(response.get("messages") or [])

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

    # --- surfaces: message updates, ephemeral answers, modals and the App Home -------------

    async def update_message(
        self, channel: str, ts: str, *, text: str, blocks: list[dict[str, Any]]
    ) -> None:
        """Replace a message the app posted (`chat.update`), without Slack's name linking."""
        await self.client.chat_update(
            channel=channel, ts=ts, text=text, blocks=blocks, link_names=False
        )

    async def post_ephemeral(
        self,
        channel: str,
        user_id: str,
        *,
        text: str,
        thread_ts: str | None = None,
    ) -> None:
        """A message only `user_id` sees, in a channel (or thread) they are looking at."""
        await self.client.chat_postEphemeral(
            channel=channel, user=user_id, text=text, thread_ts=thread_ts, link_names=False
        )

    async def open_view(self, trigger_id: str, view: dict[str, Any]) -> dict[str, Any]:
        response = await self.client.views_open(trigger_id=trigger_id, view=view)
        return dict(response["view"])

    async def push_view(self, trigger_id: str, view: dict[str, Any]) -> dict[str, Any]:
        response = await self.client.views_push(trigger_id=trigger_id, view=view)
        return dict(response["view"])

    async def update_view(self, view_id: str, view: dict[str, Any]) -> None:
        await self.client.views_update(view_id=view_id, view=view)

    async def publish_home(self, user_id: str, view: dict[str, Any]) -> None:
        await self.client.views_publish(user_id=user_id, view=view)
