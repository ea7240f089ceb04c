"""`slackrouter check`: one report on whether this setup can run, each problem with its fix.

Checks, in order: the settings; the database (reachable, migrations applied); email (SMTP
reachable and accepting the login, or the mbox file in use); Slack (`auth.test` with the bot
token, or with every installed workspace's token under OAuth, whose client credentials are
checked too); the scopes granted (the `x-oauth-scopes` header) against manifest.yml's; and the
Socket Mode app-level token (`apps.connections.open`), or the Request URL in HTTP mode.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import aiosmtplib
from slack_sdk.errors import SlackApiError
from sqlalchemy import text
from sqlalchemy.engine import make_url

from slackrouter.adapters.db.database import create_engine
from slackrouter.adapters.db.migrate import pending_revisions
from slackrouter.adapters.slack.gateway import create_client, slack_error
from slackrouter.config import Settings, SettingsError, load_settings
from slackrouter.slack_manifest import MANIFEST_PATH, bot_scopes, load_manifest

TIMEOUT = 10.0


@dataclass(frozen=True)
class Finding:
    check: str
    status: str  # "ok", "warn" (worth knowing, not a failure) or "fail"
    detail: str
    fix: str | None = None


def report(findings: list[Finding]) -> str:
    width = max(len(f.check) for f in findings)
    lines = ["slackrouter check"]
    for finding in findings:
        mark = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}[finding.status]
        lines.append(f"  {mark}  {finding.check.ljust(width)}  {finding.detail}")
        if finding.fix:
            lines.append(f"        {' ' * width}  fix: {finding.fix}")
    failed = sum(f.status == "fail" for f in findings)
    lines.append("all checks passed" if not failed else f"{failed} check(s) failed")
    return "\n".join(lines)


async def run_checks(
    environ: Mapping[str, str] | None = None, *, manifest_path: Path = MANIFEST_PATH
) -> list[Finding]:
    try:
        settings = load_settings(environ)
    except SettingsError as exc:
        return [Finding("settings", "fail", str(exc), _settings_fix(str(exc)))]
    findings: list[Finding] = []
    slack_ready = True
    try:
        settings.require_slack()
        mode = "Socket Mode" if settings.socket_mode else "HTTP mode"
        workspaces = "OAuth (many workspaces)" if settings.oauth else "one workspace (bot token)"
        findings.append(Finding("settings", "ok", f"{mode}, {workspaces}"))
    except SettingsError as exc:
        slack_ready = False
        findings.append(Finding("settings", "fail", str(exc), _settings_fix(str(exc))))
    findings += await _database(settings)
    findings.append(await _mail(settings))
    if slack_ready:
        try:
            wanted = set(settings.slack_scopes or bot_scopes(load_manifest(manifest_path)))
        except FileNotFoundError:
            wanted = set(settings.slack_scopes)
            findings.append(
                Finding("manifest", "warn", f"{manifest_path} not found: scopes not compared")
            )
        findings += await _slack(settings, wanted)
        findings.append(await _connection(settings))
    return findings


def _settings_fix(message: str) -> str:
    name = message.split(":", 1)[0]
    return f"set {name} in .env or the environment (.env.example says what each setting takes)"


async def _database(settings: Settings) -> list[Finding]:
    where = make_url(settings.database_url).render_as_string(hide_password=True)
    engine = create_engine(settings.database_url)
    try:
        async with asyncio.timeout(TIMEOUT):
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
            pending = await pending_revisions(engine)
    except Exception as exc:
        return [
            Finding(
                "database",
                "fail",
                f"{where}: unreachable ({type(exc).__name__}: {exc})".replace("\n", " ")[:300],
                "check DATABASE_URL (host, port, database name, user and password) and that the "
                "database server is running and reachable from here",
            )
        ]
    finally:
        await engine.dispose()
    if pending:
        return [
            Finding(
                "database",
                "fail",
                f"{where}: reachable, but migrations {', '.join(sorted(pending))} are not applied",
                "run `slackrouter migrate` once (with SQLite, `slackrouter run` also applies them)",
            )
        ]
    return [Finding("database", "ok", f"{where}: reachable, migrations applied")]


async def _mail(settings: Settings) -> Finding:
    if not settings.smtp_host:
        return Finding(
            "email",
            "ok",
            f"no SMTP_HOST: chats for follow-up are written to the mbox file {settings.mbox_path}",
        )
    where = f"{settings.smtp_host}:{settings.smtp_port} ({settings.smtp_security})"
    smtp = aiosmtplib.SMTP(
        hostname=settings.smtp_host,
        port=settings.smtp_port,
        use_tls=settings.smtp_security == "tls",
        start_tls=settings.smtp_security == "starttls",
        timeout=TIMEOUT,
    )
    try:
        await smtp.connect()
        if settings.smtp_username:
            await smtp.login(settings.smtp_username, settings.smtp_password or "")
        await smtp.quit()
    except aiosmtplib.SMTPAuthenticationError as exc:
        return Finding(
            "email",
            "fail",
            f"{where}: the server refused the login ({exc.code})",
            "check SMTP_USERNAME and SMTP_PASSWORD",
        )
    except (aiosmtplib.SMTPException, OSError) as exc:
        return Finding(
            "email",
            "fail",
            f"{where}: {type(exc).__name__}: {exc}".replace("\n", " ")[:300],
            "check SMTP_HOST, SMTP_PORT and SMTP_SECURITY (starttls on 587, tls on 465), and "
            "that this machine may reach the server",
        )
    login = f", logged in as {settings.smtp_username}" if settings.smtp_username else ""
    return Finding("email", "ok", f"{where}: reachable{login}")


async def _slack(settings: Settings, wanted: set[str]) -> list[Finding]:
    if not settings.oauth:
        return await _auth_test(settings, settings.slack_bot_token, "the bot token", wanted)
    findings = [await _oauth_credentials(settings)]
    try:
        tokens = await _installed_tokens(settings)
    except Exception as exc:
        findings.append(
            Finding("slack", "fail", f"cannot read the installations: {type(exc).__name__}")
        )
        return findings
    if not tokens:
        findings.append(
            Finding(
                "slack",
                "warn",
                "no workspace has installed the app yet",
                f"open {settings.public_url}/slack/install to install it",
            )
        )
    for team_id, token in tokens:
        findings += await _auth_test(settings, token, f"workspace {team_id}'s token", wanted)
    return findings


async def _auth_test(
    settings: Settings, token: str | None, whose: str, wanted: set[str]
) -> list[Finding]:
    client = create_client(token, settings.slack_api_url, settings.slack_call_timeout)
    try:
        response = await client.auth_test()
    except SlackApiError as exc:
        error = slack_error(exc)
        return [
            Finding(
                "slack",
                "fail",
                f"auth.test with {whose}: {error}",
                "copy the Bot User OAuth Token (xoxb-…) from the app's OAuth & Permissions page "
                "into SLACK_BOT_TOKEN; reinstall the app if the token was revoked"
                if not settings.oauth
                else "the workspace must install the app again (its token no longer works)",
            )
        ]
    except Exception as exc:
        return [
            Finding(
                "slack",
                "fail",
                f"cannot reach {settings.slack_api_url} ({type(exc).__name__})",
                "check this machine's connection to Slack (proxy, firewall) and SLACK_API_URL",
            )
        ]
    team = f"{response.get('team')} ({response.get('team_id')})"
    findings = [Finding("slack", "ok", f"auth.test: {team} as @{response.get('user')}")]
    header = response.headers.get("x-oauth-scopes") or response.headers.get("X-OAuth-Scopes")
    if header is None:
        findings.append(Finding("scopes", "warn", "Slack did not say which scopes were granted"))
        return findings
    granted = {scope.strip() for scope in header.split(",") if scope.strip()}
    missing, extra = sorted(wanted - granted), sorted(granted - wanted)
    if missing:
        findings.append(
            Finding(
                "scopes",
                "fail",
                f"{team} lacks {', '.join(missing)}",
                "add the scopes of manifest.yml under OAuth & Permissions → Bot Token Scopes (or "
                "paste manifest.yml under App Manifest), then reinstall the app to the workspace",
            )
        )
    elif extra:
        findings.append(
            Finding(
                "scopes",
                "warn",
                f"{team} also granted {', '.join(extra)}, which slackrouter does not use",
                "remove them from the app's Bot Token Scopes and reinstall, to grant no more "
                "than needed",
            )
        )
    else:
        findings.append(Finding("scopes", "ok", f"{team}: granted as in manifest.yml"))
    return findings


async def _oauth_credentials(settings: Settings) -> Finding:
    """oauth.v2.access with a code that cannot be valid: `invalid_code` means Slack accepted
    the client id and secret."""
    client = create_client(None, settings.slack_api_url, settings.slack_call_timeout)
    try:
        await client.oauth_v2_access(
            client_id=settings.slack_client_id or "",
            client_secret=settings.slack_client_secret or "",
            code="slackrouter-check",
        )
    except SlackApiError as exc:
        error = slack_error(exc)
        if error == "invalid_code":
            return Finding("oauth", "ok", "Slack accepts SLACK_CLIENT_ID and SLACK_CLIENT_SECRET")
        return Finding(
            "oauth",
            "fail",
            f"oauth.v2.access: {error}",
            "copy the Client ID and Client Secret from the app's Basic Information → App "
            "Credentials into SLACK_CLIENT_ID and SLACK_CLIENT_SECRET",
        )
    except Exception as exc:
        return Finding("oauth", "fail", f"cannot reach {settings.slack_api_url} ({exc!r})")
    return Finding("oauth", "warn", "oauth.v2.access accepted a made-up code")


async def _installed_tokens(settings: Settings) -> list[tuple[str, str]]:
    from slackrouter.adapters.slack.installations import WorkspaceTokens, installation_store

    engine = create_engine(settings.database_url)
    try:
        store = installation_store(
            engine,
            client_id=settings.slack_client_id or "",
            encryption_key=settings.slack_token_encryption_key,
        )
        tokens = WorkspaceTokens(
            store,
            engine,
            client_id=settings.slack_client_id or "",
            client_secret=settings.slack_client_secret or "",
            client=create_client(None, settings.slack_api_url, settings.slack_call_timeout),
        )
        return [(team_id, await tokens.bot_token(team_id)) for team_id in await tokens.team_ids()]
    finally:
        await engine.dispose()


async def _connection(settings: Settings) -> Finding:
    if not settings.socket_mode:
        url = f"{settings.public_url}/slack/events"
        if not url.startswith("https://"):
            return Finding(
                "connection",
                "warn",
                f"HTTP mode: Slack sends events to {url}, but Slack only calls https:// URLs",
                "put the app behind HTTPS and set PUBLIC_URL, or use Socket Mode (SLACK_APP_TOKEN)",
            )
        return Finding(
            "connection", "ok", f"HTTP mode: set {url} as the Request URL in the app's settings"
        )
    client = create_client(None, settings.slack_api_url, settings.slack_call_timeout)
    try:
        await client.apps_connections_open(app_token=settings.slack_app_token or "")
    except SlackApiError as exc:
        return Finding(
            "connection",
            "fail",
            f"Socket Mode: apps.connections.open: {slack_error(exc)}",
            "generate an app-level token with the connections:write scope (Basic Information → "
            "App-Level Tokens) into SLACK_APP_TOKEN, and turn Socket Mode on in the app",
        )
    except Exception as exc:
        return Finding("connection", "fail", f"cannot reach {settings.slack_api_url} ({exc!r})")
    return Finding("connection", "ok", "Socket Mode: SLACK_APP_TOKEN opens a connection")


def main(environ: Mapping[str, str] | None = None) -> int:
    findings = asyncio.run(run_checks(environ))
    print(report(findings))
    return 1 if any(f.status == "fail" for f in findings) else 0
