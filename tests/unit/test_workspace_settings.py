"""Settings for many workspaces (OAuth) and the encryption of their tokens at rest."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from slackrouter.adapters.slack.installations import TokenCipher
from slackrouter.config import SettingsError, load_settings

BASE = {"SLACK_SIGNING_SECRET": "secret"}


def test_oauth_instead_of_a_bot_token() -> None:
    settings = load_settings(
        {**BASE, "SLACK_CLIENT_ID": "1.2", "SLACK_CLIENT_SECRET": "s", "SLACK_SCOPES": "a, b"}
    )
    settings.require_slack()
    assert settings.oauth and settings.slack_scopes == ("a", "b")
    assert not load_settings({**BASE, "SLACK_BOT_TOKEN": "xoxb-1"}).oauth
    assert load_settings(BASE).slack_scopes == ()  # the manifest's


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SLACK_CLIENT_ID": "1.2"}, "SLACK_CLIENT_SECRET: missing"),
        ({"SLACK_CLIENT_SECRET": "s"}, "SLACK_CLIENT_ID: missing"),
        (
            {"SLACK_CLIENT_ID": "1.2", "SLACK_CLIENT_SECRET": "s", "SLACK_BOT_TOKEN": "xoxb-1"},
            "SLACK_BOT_TOKEN: leave it empty",
        ),
        ({}, "SLACK_BOT_TOKEN: missing"),
    ],
)
def test_one_clear_line_for_each_mistake(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings({**BASE, **env}).require_slack()


def test_the_encryption_key_must_be_a_fernet_key() -> None:
    with pytest.raises(SettingsError, match="SLACK_TOKEN_ENCRYPTION_KEY: expected Fernet keys"):
        load_settings({"SLACK_TOKEN_ENCRYPTION_KEY": "not-a-key"})
    key = Fernet.generate_key().decode()
    assert load_settings({"SLACK_TOKEN_ENCRYPTION_KEY": key}).slack_token_encryption_key == key


def test_tokens_are_encrypted_and_keys_can_be_rotated() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    stored = TokenCipher(old).encrypt("xoxb-1-secret")
    assert stored is not None and "xoxb" not in stored
    assert TokenCipher(f"{new},{old}").decrypt(stored) == "xoxb-1-secret"
    assert TokenCipher(f"{new},{old}").encrypt("xoxb-2") != TokenCipher(old).encrypt("xoxb-2")
    assert TokenCipher(new).decrypt("xoxb-saved-before-a-key") == "xoxb-saved-before-a-key"
    assert TokenCipher(new).decrypt(None) is None
    with pytest.raises(RuntimeError, match="not the key it was encrypted with"):
        TokenCipher(new).decrypt(stored)
