"""Many workspaces (OAuth distribution): where each workspace's bot token lives, and how an
outbound call gets the right one.

- `installation_store`: slack_sdk's asyncio SQLAlchemy store in the app's database (tables from
  migration 0006), wrapped by `EncryptedInstallationStore` when SLACK_TOKEN_ENCRYPTION_KEY is set.
- `WorkspaceTokens`: a workspace's bot token for `SlackGateway.for_team`, cached for a minute
  and rotated (`oauth.v2.access` with the refresh token) before it expires, when the app has
  token rotation on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from slack_sdk.errors import SlackApiError, SlackTokenRotationError
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation
from slack_sdk.oauth.installation_store.sqlalchemy import AsyncSQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import AsyncSQLAlchemyOAuthStateStore
from slack_sdk.oauth.token_rotation.async_rotator import AsyncTokenRotator
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from slackrouter.adapters.db import slack_oauth

log = logging.getLogger(__name__)

TOKEN_FIELDS = ("bot_token", "bot_refresh_token", "user_token", "user_refresh_token")
OAUTH_STATE_SECONDS = 600
ROTATE_MINUTES_BEFORE_EXPIRY = 120  # Bolt's default: rotate when less than 2 hours are left
TOKEN_CACHE_SECONDS = 60.0
ROTATION_SAVE_CHECKS, ROTATION_SAVE_WAIT = 10, 0.3  # how long to wait for another replica's save


class NotInstalled(SlackApiError):
    """No bot token for this workspace: never installed, uninstalled, or its token revoked.
    `slack_error()` reads it as `not_installed`, which no retry can fix."""

    def __init__(self, team_id: str) -> None:
        response = AsyncSlackResponse(
            client=None,  # type: ignore[arg-type]
            http_verb="POST",
            api_url="",
            req_args={},
            data={"ok": False, "error": "not_installed"},
            headers={},
            status_code=200,
        )
        super().__init__(f"slackrouter is not installed in workspace {team_id}", response)
        self.team_id = team_id


class TokenCipher:
    """Fernet encryption of tokens at rest. `keys` is comma-separated: the first encrypts, any
    decrypts, so a key can be rotated by putting the new one first. A stored value that still
    looks like a Slack token (saved before a key was set) is read as it is."""

    def __init__(self, keys: str) -> None:
        self._fernet = MultiFernet([Fernet(key.strip()) for key in keys.split(",")])

    def encrypt(self, value: str | None) -> str | None:
        return None if value is None else self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, value: str | None) -> str | None:
        if value is None or value.startswith(("xox", "xapp-")):
            return value
        try:
            return self._fernet.decrypt(value.encode()).decode()
        except InvalidToken:
            raise RuntimeError(
                "a stored Slack token cannot be decrypted: SLACK_TOKEN_ENCRYPTION_KEY is not the "
                "key it was encrypted with (list the old key after the new one)"
            ) from None


class EncryptedInstallationStore(AsyncInstallationStore):
    """Wraps a store: tokens are encrypted before they are saved and decrypted when found."""

    def __init__(self, store: AsyncInstallationStore, cipher: TokenCipher) -> None:
        self._store = store
        self._cipher = cipher

    @property
    def logger(self) -> logging.Logger:
        return self._store.logger

    def _copy(self, entity: Bot | Installation, encrypt: bool) -> Bot | Installation:
        values = entity.to_dict_for_copying()
        convert = self._cipher.encrypt if encrypt else self._cipher.decrypt
        for name in TOKEN_FIELDS:
            if name in values:
                values[name] = convert(values[name])
        return type(entity)(**values)

    async def async_save(self, installation: Installation) -> None:
        await self._store.async_save(self._copy(installation, encrypt=True))  # type: ignore[arg-type]

    async def async_save_bot(self, bot: Bot) -> None:
        await self._store.async_save_bot(self._copy(bot, encrypt=True))  # type: ignore[arg-type]

    async def async_find_bot(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        is_enterprise_install: bool | None = False,
    ) -> Bot | None:
        bot = await self._store.async_find_bot(
            enterprise_id=enterprise_id,
            team_id=team_id,
            is_enterprise_install=is_enterprise_install,
        )
        return None if bot is None else self._copy(bot, encrypt=False)  # type: ignore[return-value]

    async def async_find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        installation = await self._store.async_find_installation(
            enterprise_id=enterprise_id,
            team_id=team_id,
            user_id=user_id,
            is_enterprise_install=is_enterprise_install,
        )
        if installation is None:
            return None
        return self._copy(installation, encrypt=False)  # type: ignore[return-value]

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await self._store.async_delete_bot(enterprise_id=enterprise_id, team_id=team_id)

    async def async_delete_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
    ) -> None:
        await self._store.async_delete_installation(
            enterprise_id=enterprise_id, team_id=team_id, user_id=user_id
        )


def installation_store(
    engine: AsyncEngine, *, client_id: str, encryption_key: str | None
) -> AsyncInstallationStore:
    """slack_sdk's SQLAlchemy store over the app's tables, encrypted when a key is set."""
    store = AsyncSQLAlchemyInstallationStore(
        client_id=client_id,
        engine=engine,
        bots_table_name=slack_oauth.BOTS_TABLE,
        installations_table_name=slack_oauth.INSTALLATIONS_TABLE,
    )
    if encryption_key:
        return EncryptedInstallationStore(store, TokenCipher(encryption_key))
    return store


def state_store(engine: AsyncEngine) -> AsyncSQLAlchemyOAuthStateStore:
    """OAuth `state` values (one per install attempt, ten minutes) in the app's database, so
    any replica can finish an install another one started."""
    return AsyncSQLAlchemyOAuthStateStore(
        expiration_seconds=OAUTH_STATE_SECONDS,
        engine=engine,
        table_name=slack_oauth.OAUTH_STATES_TABLE,
    )


@dataclass
class _Cached:
    token: str
    until: float


class WorkspaceTokens:
    """Each workspace's bot token, from the installation store."""

    def __init__(
        self,
        store: AsyncInstallationStore,
        engine: AsyncEngine,
        *,
        client_id: str,
        client_secret: str,
        client: AsyncWebClient,
        cache_seconds: float = TOKEN_CACHE_SECONDS,
        rotate_minutes: int = ROTATE_MINUTES_BEFORE_EXPIRY,
    ) -> None:
        self._store = store
        self._engine = engine
        self._client_id = client_id
        self._rotator = AsyncTokenRotator(
            client_id=client_id, client_secret=client_secret, client=client
        )
        self._cache_seconds = cache_seconds
        self._rotate_minutes = rotate_minutes
        self._cache: dict[str, _Cached] = {}
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def bot_token(self, team_id: str) -> str:
        """The workspace's bot token; NotInstalled if it has none."""
        cached = self._cache.get(team_id)
        if cached is not None and cached.until > time.time():
            return cached.token
        async with self._locks[team_id]:
            cached = self._cache.get(team_id)
            if cached is not None and cached.until > time.time():
                return cached.token
            bot = await self._store.async_find_bot(enterprise_id=None, team_id=team_id)
            if bot is None or not bot.bot_token:
                raise NotInstalled(team_id)
            if bot.bot_refresh_token:
                bot = await self._rotate(bot, team_id)
            until = time.time() + self._cache_seconds
            if bot.bot_token_expires_at:
                until = min(until, bot.bot_token_expires_at - self._rotate_minutes * 60)
            self._cache[team_id] = _Cached(str(bot.bot_token), until)
            return str(bot.bot_token)

    async def _rotate(self, bot: Bot, team_id: str) -> Bot:
        """The bot with a fresh token when its token expires soon. Replicas may try at the same
        time: Slack revokes a refresh token once it is used, so the one that comes second is
        refused, and takes the pair the first one stored instead."""
        try:
            rotated = await self._rotator.perform_bot_token_rotation(
                bot=bot, minutes_before_expiration=self._rotate_minutes
            )
        except SlackTokenRotationError:
            stored = await self._rotated_elsewhere(team_id, used=bot.bot_refresh_token)
            if stored is None:
                raise
            log.info("the bot token was rotated by another replica team=%s", team_id)
            return stored
        if rotated is None:
            return bot
        await self._store.async_save_bot(rotated)
        log.info("rotated the bot token team=%s", team_id)
        return rotated

    async def _rotated_elsewhere(self, team_id: str, *, used: str | None) -> Bot | None:
        """The bot stored with another refresh token than `used`, waiting a little for the
        replica that rotated it to save it; None if none comes."""
        for attempt in range(ROTATION_SAVE_CHECKS):
            if attempt:
                await asyncio.sleep(ROTATION_SAVE_WAIT)
            bot = await self._store.async_find_bot(enterprise_id=None, team_id=team_id)
            if bot is not None and bot.bot_token and bot.bot_refresh_token != used:
                return bot
        return None

    def forget(self, team_id: str) -> None:
        """Drop the cached token (the workspace uninstalled the app or revoked it)."""
        self._cache.pop(team_id, None)

    async def team_ids(self) -> list[str]:
        """Every workspace with a bot token, in id order."""
        bots = slack_oauth.bots
        async with self._engine.connect() as connection:
            rows = await connection.scalars(
                select(bots.c.team_id)
                .where(
                    bots.c.client_id == self._client_id,
                    bots.c.team_id.is_not(None),
                    bots.c.bot_token.is_not(None),
                )
                .distinct()
            )
            return sorted(str(team_id) for team_id in rows)
