"""Settings: defaults, and one clear line for each bad value."""

from __future__ import annotations

import pytest

from slackrouter.config import DEFAULT_SLACK_API_URL, SettingsError, load_settings


def test_defaults_need_nothing() -> None:
    settings = load_settings({})
    assert settings.slack_api_url == DEFAULT_SLACK_API_URL
    assert settings.database_url == "sqlite+aiosqlite:///./var/slackrouter.db"
    assert settings.port == 8000
    assert settings.public_url == "http://127.0.0.1:8000"
    assert not settings.socket_mode
    assert settings.worker_process == "separate"


def test_plain_database_urls_get_the_asyncio_driver() -> None:
    assert load_settings({"DATABASE_URL": "postgresql://u@h/db"}).database_url == (
        "postgresql+asyncpg://u@h/db"
    )
    assert load_settings({"DATABASE_URL": "sqlite:///x.db"}).database_url == (
        "sqlite+aiosqlite:///x.db"
    )


def test_slack_api_url_gets_a_trailing_slash() -> None:
    settings = load_settings({"SLACK_API_URL": "http://127.0.0.1:9999/api"})
    assert settings.slack_api_url == "http://127.0.0.1:9999/api/"


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"PORT": "eighty"}, "PORT: expected an integer from 1 to 65535, got 'eighty'"),
        ({"PORT": "70000"}, "PORT: expected an integer"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL: expected postgresql://"),
        ({"SLACK_API_URL": "slack.com"}, "SLACK_API_URL: expected an http(s) URL"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL: expected DEBUG"),
        ({"PRESENCE_MAX_AGE": "-1"}, "PRESENCE_MAX_AGE: expected a number from 5 to 3600"),
        ({"WORKER_PROCESS": "both"}, "WORKER_PROCESS: expected separate or inline"),
    ],
)
def test_a_bad_setting_is_named_in_one_line(env: dict[str, str], names: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings(env)
    assert str(error.value).startswith(names)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({}, "SLACK_BOT_TOKEN: missing"),
        ({"SLACK_BOT_TOKEN": "xoxp-user"}, "SLACK_BOT_TOKEN: expected a bot token"),
        ({"SLACK_BOT_TOKEN": "xoxb-1"}, "SLACK_SIGNING_SECRET: missing"),
        (
            {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "SLACK_APP_TOKEN": "xoxb-2"},
            "SLACK_APP_TOKEN: expected an app-level token",
        ),
    ],
)
def test_running_against_slack_needs_its_credentials(env: dict[str, str], names: str) -> None:
    with pytest.raises(SettingsError, match=f"^{names}"):
        load_settings(env).require_slack()


def test_slackrouter_admins_are_user_ids() -> None:
    settings = load_settings({"SLACKROUTER_ADMINS": " U0ADA, W0BEN,,"})
    assert settings.slackrouter_admins == frozenset({"U0ADA", "W0BEN"})
    assert load_settings({}).slackrouter_admins == frozenset()
    with pytest.raises(SettingsError, match="SLACKROUTER_ADMINS: expected Slack user ids"):
        load_settings({"SLACKROUTER_ADMINS": "U0ADA,@ben"})


def test_the_default_sender_is_a_usable_address_and_a_bad_one_is_named() -> None:
    assert load_settings({}).mail_from == "slackrouter <slackrouter@localhost.localdomain>"
    with pytest.raises(SettingsError, match=r"^MAIL_FROM: expected an address"):
        load_settings({"MAIL_FROM": "slackrouter@localhost"})
