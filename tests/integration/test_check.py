"""`slackrouter check` on a good setup and on each bad one: one report, every failure with its
fix, exit status 1 on any failure."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from slackrouter.adapters.db.database import create_engine
from slackrouter.adapters.db.migrate import upgrade
from slackrouter.check import Finding, report, run_checks
from slackrouter.cli import main
from slackrouter.sandbox.fake_slack import FakeSlack
from slackrouter.sandbox.processes import free_port
from slackrouter.sandbox.server import serve
from slackrouter.slack_manifest import bot_scopes
from tests.integration.test_mail import Inbox, accept_only

APP_TOKEN = "xapp-1-A0001-1-checktoken"


@dataclass
class Setup:
    env: dict[str, str]
    slack: FakeSlack

    async def findings(self, **changes: str) -> dict[str, Finding]:
        env = {**self.env, **changes}
        return {f.check: f for f in await run_checks({k: v for k, v in env.items() if v})}


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file with every migration applied, made once and copied by each test."""
    path = tmp_path_factory.mktemp("check") / "migrated.db"

    async def migrate() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{path}")
        await upgrade(engine)
        await engine.dispose()

    asyncio.run(migrate())
    return path


@pytest.fixture
async def setup(tmp_path: Path, migrated: Path) -> AsyncIterator[Setup]:
    """A setup that passes: a migrated SQLite file, the mbox default, a bot token granted the
    manifest's scopes, and a Socket Mode app-level token."""
    shutil.copy(migrated, tmp_path / "slackrouter.db")
    database = f"sqlite:///{tmp_path / 'slackrouter.db'}"
    slack = FakeSlack()
    slack.token_scopes[slack.bot_token] = ",".join(bot_scopes())
    slack.add_app_token(APP_TOKEN)
    slack.socket_mode_url = "ws://127.0.0.1:9/link/"
    async with serve(slack.asgi) as slack_url:
        yield Setup(
            {
                "SLACK_BOT_TOKEN": slack.bot_token,
                "SLACK_SIGNING_SECRET": "secret",
                "SLACK_APP_TOKEN": APP_TOKEN,
                "SLACK_API_URL": f"{slack_url}/api/",
                "DATABASE_URL": database,
                "MBOX_PATH": str(tmp_path / "mail.mbox"),
            },
            slack,
        )


@pytest.fixture
def smtp() -> Iterator[int]:
    controller = Controller(
        Inbox(),
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=accept_only("slackrouter", "right"),
        auth_require_tls=False,
    )
    controller.start()
    yield controller.port
    controller.stop()


async def test_a_good_setup_passes_every_check(setup: Setup) -> None:
    findings = await setup.findings()
    assert {name: f.status for name, f in findings.items()} == {
        "settings": "ok",
        "database": "ok",
        "email": "ok",
        "slack": "ok",
        "scopes": "ok",
        "connection": "ok",
    }
    assert "mbox" in findings["email"].detail
    assert "Acme (T0001)" in findings["slack"].detail
    text = report(list(findings.values()))
    assert text.splitlines()[-1] == "all checks passed"
    assert "FAIL" not in text


async def test_smtp_reachable_with_its_login_and_refusing_a_wrong_one(
    setup: Setup, smtp: int
) -> None:
    server = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp), "SMTP_SECURITY": "none"}
    good = await setup.findings(**server, SMTP_USERNAME="slackrouter", SMTP_PASSWORD="right")
    assert good["email"].status == "ok", good["email"]
    assert "logged in as slackrouter" in good["email"].detail
    bad = await setup.findings(**server, SMTP_USERNAME="slackrouter", SMTP_PASSWORD="wrong")
    assert bad["email"].status == "fail"
    assert bad["email"].fix == "check SMTP_USERNAME and SMTP_PASSWORD"


@pytest.mark.parametrize(
    ("changes", "check", "detail", "fix"),
    [
        ({"SLACK_BOT_TOKEN": ""}, "settings", "SLACK_BOT_TOKEN: missing", "set SLACK_BOT_TOKEN"),
        ({"PORT": "http"}, "settings", "PORT: expected an integer", "set PORT"),
        (
            {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},
            "database",
            "unreachable",
            "check DATABASE_URL",
        ),
        ({"SMTP_HOST": "127.0.0.1", "SMTP_PORT": "1"}, "email", "127.0.0.1:1", "SMTP_HOST"),
        ({"SLACK_BOT_TOKEN": "xoxb-revoked"}, "slack", "invalid_auth", "Bot User OAuth Token"),
        ({"SLACK_API_URL": "http://127.0.0.1:1/api/"}, "slack", "cannot reach", "connection"),
        ({"SLACK_APP_TOKEN": "xapp-1-wrong"}, "connection", "invalid_auth", "connections:write"),
        ({"SLACK_APP_TOKEN": ""}, "connection", "Slack only calls https://", "PUBLIC_URL"),
    ],
)
async def test_each_bad_setup_fails_with_its_fix(
    setup: Setup, changes: dict[str, str], check: str, detail: str, fix: str
) -> None:
    findings = await setup.findings(**changes)
    finding = findings[check]
    assert finding.status in {"fail", "warn"}
    assert detail in finding.detail and fix in (finding.fix or ""), finding
    if finding.status == "warn":  # HTTP mode over plain http: worth saying, not a failure
        assert all(f.status != "fail" for f in findings.values())


async def test_a_database_without_migrations_fails(setup: Setup, tmp_path: Path) -> None:
    findings = await setup.findings(DATABASE_URL=f"sqlite:///{tmp_path / 'empty.db'}")
    assert findings["database"].status == "fail"
    assert "are not applied" in findings["database"].detail
    assert "slackrouter migrate" in (findings["database"].fix or "")


async def test_scopes_granted_are_compared_with_the_manifest(setup: Setup) -> None:
    setup.slack.token_scopes[setup.slack.bot_token] = ",".join(
        scope for scope in bot_scopes() if scope != "dnd:read"
    )
    missing = await setup.findings()
    assert missing["scopes"].status == "fail"
    assert "lacks dnd:read" in missing["scopes"].detail
    assert "reinstall" in (missing["scopes"].fix or "")

    setup.slack.token_scopes[setup.slack.bot_token] = ",".join([*bot_scopes(), "files:write"])
    extra = await setup.findings()
    assert extra["scopes"].status == "warn"
    assert "files:write" in extra["scopes"].detail


async def test_oauth_client_credentials_and_installed_workspaces(setup: Setup) -> None:
    oauth = {
        "SLACK_BOT_TOKEN": "",
        "SLACK_CLIENT_ID": setup.slack.client_id,
        "SLACK_CLIENT_SECRET": setup.slack.client_secret,
    }
    good = await setup.findings(**oauth)
    assert good["oauth"].status == "ok"
    assert good["slack"].status == "warn" and "/slack/install" in (good["slack"].fix or "")
    bad = await setup.findings(**oauth | {"SLACK_CLIENT_SECRET": "wrong"})
    assert bad["oauth"].status == "fail"
    assert "bad_client_secret" in bad["oauth"].detail
    assert "SLACK_CLIENT_SECRET" in (bad["oauth"].fix or "")


async def test_the_command_prints_the_report_and_exits_non_zero_on_a_failure(
    setup: Setup, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    for name, value in setup.env.items():
        monkeypatch.setenv(name, value)
    assert await _run_main() == 0
    assert capsys.readouterr().out.splitlines()[-1] == "all checks passed"
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-revoked")
    assert await _run_main() == 1
    out = capsys.readouterr().out
    assert "FAIL  slack" in out and "fix: copy the Bot User OAuth Token" in out
    assert out.splitlines()[-1] == "1 check(s) failed"


async def _run_main() -> int:
    # `slackrouter check` runs its own event loop: run it beside this test's.
    return await asyncio.to_thread(main, ["check"])
