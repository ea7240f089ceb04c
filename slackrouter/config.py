"""Settings from the environment: every knob slackrouter has, validated once at start-up.

A bad value stops start-up with a `SettingsError` whose message is one line naming the setting and
what is expected; the CLI prints it without a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from slackrouter.adapters.mail_render import configured_address

DEFAULT_SLACK_API_URL = "https://slack.com/api/"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./var/slackrouter.db"

T = TypeVar("T")


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names it and says what is expected."""


@dataclass(frozen=True)
class Settings:
    slack_bot_token: str | None = None
    slack_signing_secret: str | None = None
    slack_app_token: str | None = None
    slack_api_url: str = DEFAULT_SLACK_API_URL
    database_url: str = DEFAULT_DATABASE_URL
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str = "http://127.0.0.1:8000"
    log_level: str = "INFO"
    presence_max_age: float = 60.0
    presence_refresh_interval: float = 20.0
    presence_calls_per_minute: int = 50
    delivery_poll_interval: float = 2.0
    delivery_max_attempts: int = 12
    slack_call_timeout: int = 30
    worker_process: str = "separate"  # `run`: write and deliver in a process of its own
    max_body_bytes: int = 16_384
    max_wait_seconds: int = 30
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_security: str = "starttls"
    smtp_username: str | None = None
    smtp_password: str | None = None
    mail_from: str = "slackrouter <slackrouter@localhost.localdomain>"
    mbox_path: str = "./var/mail.mbox"
    email_debounce_seconds: float = 180.0
    timer_poll_interval: float = 1.0
    rate_limit_per_visitor: int = 30
    rate_limit_per_ip: int = 300
    slackrouter_admins: frozenset[str] = frozenset()
    slack_client_id: str | None = None
    slack_client_secret: str | None = None
    slack_scopes: tuple[str, ...] = ()  # empty: the bot scopes of manifest.yml
    slack_token_encryption_key: str | None = None

    @property
    def socket_mode(self) -> bool:
        """Socket Mode when an app-level token is set; HTTP mode (/slack/events) otherwise."""
        return bool(self.slack_app_token)

    @property
    def oauth(self) -> bool:
        """OAuth distribution (many workspaces, a bot token each) instead of one bot token."""
        return bool(self.slack_client_id or self.slack_client_secret)

    def require_slack(self) -> None:
        """Check the settings `slackrouter run` needs to talk to a real Slack."""
        if self.oauth:
            _require_oauth(self)
        elif not self.slack_bot_token:
            raise SettingsError(
                "SLACK_BOT_TOKEN: missing; expected the bot token (xoxb-...), or "
                "SLACK_CLIENT_ID and SLACK_CLIENT_SECRET to install into many workspaces"
            )
        elif not self.slack_bot_token.startswith("xoxb-"):
            raise SettingsError("SLACK_BOT_TOKEN: expected a bot token starting with 'xoxb-'")
        if not self.slack_signing_secret:
            raise SettingsError(
                "SLACK_SIGNING_SECRET: missing; expected the app's signing secret "
                "(Basic Information > App Credentials)"
            )
        if self.slack_app_token and not self.slack_app_token.startswith("xapp-"):
            raise SettingsError(
                "SLACK_APP_TOKEN: expected an app-level token starting with 'xapp-'"
            )


def _require_oauth(settings: Settings) -> None:
    if not settings.slack_client_id:
        raise SettingsError("SLACK_CLIENT_ID: missing; expected the app's Client ID")
    if not settings.slack_client_secret:
        raise SettingsError("SLACK_CLIENT_SECRET: missing; expected the app's Client Secret")
    if settings.slack_bot_token:
        raise SettingsError(
            "SLACK_BOT_TOKEN: leave it empty with SLACK_CLIENT_ID; OAuth stores a token for "
            "each workspace that installs the app"
        )


def _encryption_key(raw: str | None) -> str | None:
    """Fernet keys, comma-separated: the first encrypts, any of them decrypts (key rotation)."""
    if raw is None:
        return None
    from cryptography.fernet import Fernet

    for key in raw.split(","):
        try:
            Fernet(key.strip())
        except (ValueError, TypeError):
            raise SettingsError(
                "SLACK_TOKEN_ENCRYPTION_KEY: expected Fernet keys (32 url-safe base64 bytes), "
                'comma-separated; make one with `python -c "from cryptography.fernet import '
                'Fernet; print(Fernet.generate_key().decode())"`'
            ) from None
    return raw


def _number(name: str, raw: str, cast: Callable[[str], T], low: float, high: float) -> T:
    try:
        value = cast(raw)
    except ValueError:
        value = None
    if value is None or not (low <= value <= high):  # type: ignore[operator]
        kind = "an integer" if cast is int else "a number"
        raise SettingsError(f"{name}: expected {kind} from {low:g} to {high:g}, got {raw!r}")
    return value


def normalize_database_url(url: str) -> str:
    """Pick the asyncio driver for a plain `postgresql://` or `sqlite://` URL."""
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url.split("://", 1)[1]
    if url.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
        return url
    raise SettingsError(
        f"DATABASE_URL: expected postgresql://... or sqlite:///path, got {url.split(':', 1)[0]!r}"
    )


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read settings from `environ` (default: the process environment)."""
    env = os.environ if environ is None else environ

    def text(name: str) -> str | None:
        value = env.get(name, "").strip()
        return value or None

    def num(name: str, cast: Callable[[str], T], default: T, low: float, high: float) -> T:
        raw = text(name)
        return default if raw is None else _number(name, raw, cast, low, high)

    api_url = text("SLACK_API_URL") or DEFAULT_SLACK_API_URL
    if not api_url.startswith(("http://", "https://")):
        raise SettingsError(f"SLACK_API_URL: expected an http(s) URL, got {api_url!r}")
    if not api_url.endswith("/"):
        api_url += "/"
    port = num("PORT", int, 8000, 1, 65535)
    host = text("HOST") or "127.0.0.1"
    public_url = (text("PUBLIC_URL") or f"http://{host}:{port}").rstrip("/")
    if not public_url.startswith(("http://", "https://")):
        raise SettingsError(f"PUBLIC_URL: expected an http(s) URL, got {public_url!r}")
    log_level = (text("LOG_LEVEL") or "INFO").upper()
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise SettingsError(f"LOG_LEVEL: expected DEBUG, INFO, WARNING or ERROR, got {log_level!r}")
    smtp_security = (text("SMTP_SECURITY") or "starttls").lower()
    if smtp_security not in {"starttls", "tls", "none"}:
        raise SettingsError(f"SMTP_SECURITY: expected starttls, tls or none, got {smtp_security!r}")
    admins = frozenset(
        user_id.strip() for user_id in (text("SLACKROUTER_ADMINS") or "").split(",")
    ) - {""}
    for user_id in sorted(admins):
        if not (user_id[:1] in {"U", "W"} and user_id.isalnum()):
            raise SettingsError(
                f"SLACKROUTER_ADMINS: expected Slack user ids (U… or W…), got {user_id!r}"
            )
    worker_process = (text("WORKER_PROCESS") or "separate").lower()
    if worker_process not in {"separate", "inline"}:
        raise SettingsError(f"WORKER_PROCESS: expected separate or inline, got {worker_process!r}")
    mail_from = text("MAIL_FROM") or Settings.mail_from
    try:
        configured_address(mail_from, "MAIL_FROM")
    except ValueError:
        raise SettingsError(
            f"MAIL_FROM: expected an address like 'Name <addr@example.com>', got {mail_from!r}"
        ) from None
    return Settings(
        slack_bot_token=text("SLACK_BOT_TOKEN"),
        slack_signing_secret=text("SLACK_SIGNING_SECRET"),
        slack_app_token=text("SLACK_APP_TOKEN"),
        slack_api_url=api_url,
        database_url=normalize_database_url(text("DATABASE_URL") or DEFAULT_DATABASE_URL),
        host=host,
        port=port,
        public_url=public_url,
        log_level=log_level,
        presence_max_age=num("PRESENCE_MAX_AGE", float, 60.0, 5, 3600),
        presence_refresh_interval=num("PRESENCE_REFRESH_INTERVAL", float, 20.0, 1, 3600),
        presence_calls_per_minute=num("PRESENCE_CALLS_PER_MINUTE", int, 50, 1, 1000),
        delivery_poll_interval=num("DELIVERY_POLL_INTERVAL", float, 2.0, 0.05, 60),
        delivery_max_attempts=num("DELIVERY_MAX_ATTEMPTS", int, 12, 1, 100),
        slack_call_timeout=num("SLACK_CALL_TIMEOUT", int, 30, 1, 300),
        worker_process=worker_process,
        max_body_bytes=num("MAX_BODY_BYTES", int, 16_384, 1024, 1_048_576),
        max_wait_seconds=num("MAX_WAIT_SECONDS", int, 30, 1, 300),
        smtp_host=text("SMTP_HOST"),
        smtp_port=num("SMTP_PORT", int, 587, 1, 65535),
        smtp_security=smtp_security,
        smtp_username=text("SMTP_USERNAME"),
        smtp_password=text("SMTP_PASSWORD"),
        mail_from=mail_from,
        mbox_path=text("MBOX_PATH") or Settings.mbox_path,
        email_debounce_seconds=num("EMAIL_DEBOUNCE_SECONDS", float, 180.0, 0, 86_400),
        timer_poll_interval=num("TIMER_POLL_INTERVAL", float, 1.0, 0.05, 60),
        rate_limit_per_visitor=num("RATE_LIMIT_PER_VISITOR", int, 30, 1, 100_000),
        rate_limit_per_ip=num("RATE_LIMIT_PER_IP", int, 300, 1, 1_000_000),
        slackrouter_admins=admins,
        slack_client_id=text("SLACK_CLIENT_ID"),
        slack_client_secret=text("SLACK_CLIENT_SECRET"),
        slack_scopes=tuple(
            scope.strip() for scope in (text("SLACK_SCOPES") or "").split(",") if scope.strip()
        ),
        slack_token_encryption_key=_encryption_key(text("SLACK_TOKEN_ENCRYPTION_KEY")),
    )


def sqlite_path(database_url: str) -> Path | None:
    """The file behind a SQLite URL (None for PostgreSQL or in-memory)."""
    if not database_url.startswith("sqlite"):
        return None
    path = database_url.split(":///", 1)[1] if ":///" in database_url else ""
    return Path(path) if path and path != ":memory:" else None
