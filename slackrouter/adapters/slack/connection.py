"""How the app reaches Slack: one workspace with a bot token, or many through OAuth.

With SLACK_BOT_TOKEN, one client and one gateway speak for the workspace. With SLACK_CLIENT_ID
and SLACK_CLIENT_SECRET, Bolt runs the OAuth install flow (`/slack/install`,
`/slack/oauth_redirect`) and authorizes each request from the installation store, and the
gateway finds each workspace's bot token there (`SlackGateway.for_team`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncEngine

from slackrouter.adapters.slack.gateway import SlackGateway, create_client
from slackrouter.adapters.slack.installations import (
    WorkspaceTokens,
    installation_store,
    state_store,
)
from slackrouter.config import DEFAULT_SLACK_API_URL, Settings
from slackrouter.slack_manifest import bot_scopes

INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"
SLACK_AUTHORIZE_URL = "https://slack.com/oauth/v2/authorize"


@dataclass
class SlackConnection:
    client: AsyncWebClient
    gateway: SlackGateway
    installations: AsyncInstallationStore | None = None
    bolt_options: dict[str, Any] = field(default_factory=dict)
    """Extra `AsyncApp` arguments: the OAuth settings and installation store."""


def authorize_url(api_url: str) -> str:
    """Slack's consent page; next to the Web API when that is elsewhere (the sandbox)."""
    if api_url == DEFAULT_SLACK_API_URL:
        return SLACK_AUTHORIZE_URL
    return api_url.removesuffix("/").removesuffix("/api") + "/oauth/v2/authorize"


def connect_slack(settings: Settings, engine: AsyncEngine) -> SlackConnection:
    client = create_client(
        settings.slack_bot_token, settings.slack_api_url, settings.slack_call_timeout
    )
    if not settings.oauth:
        return SlackConnection(client, SlackGateway(client))
    assert settings.slack_client_id and settings.slack_client_secret
    store = installation_store(
        engine,
        client_id=settings.slack_client_id,
        encryption_key=settings.slack_token_encryption_key,
    )
    tokens = WorkspaceTokens(
        store,
        engine,
        client_id=settings.slack_client_id,
        client_secret=settings.slack_client_secret,
        client=client,
    )
    # Imported here: the worker process connects to Slack too, and has no Bolt app.
    from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings

    oauth = AsyncOAuthSettings(
        client_id=settings.slack_client_id,
        client_secret=settings.slack_client_secret,
        scopes=list(settings.slack_scopes or bot_scopes()),
        redirect_uri=settings.public_url + REDIRECT_PATH,
        install_path=INSTALL_PATH,
        redirect_uri_path=REDIRECT_PATH,
        authorization_url=authorize_url(settings.slack_api_url),
        installation_store=store,
        installation_store_bot_only=True,
        state_store=state_store(engine),
    )
    return SlackConnection(
        client,
        SlackGateway(client, tokens=tokens),
        store,
        # The store is given to the app too, so that Bolt's authorize (and its token
        # rotation) uses the app's client and so SLACK_API_URL.
        {
            "oauth_settings": oauth,
            "installation_store": store,
            "installation_store_bot_only": True,
        },
    )
