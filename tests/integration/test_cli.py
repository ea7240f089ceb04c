"""The `slackrouter` command as an operator uses it, against the fake Slack and a real database."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from slackrouter.cli import main
from slackrouter.sandbox.fake_slack import FakeSlack
from slackrouter.sandbox.server import serve


@pytest.fixture
async def operator_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeSlack]:
    slack = FakeSlack()
    slack.add_user("U0ALICE", "alice", real_name="Alice Rep", email="alice@acme.example")
    async with serve(slack.asgi) as url:
        monkeypatch.chdir(tmp_path)
        for name in list(os.environ):
            if name.startswith(("SLACK_", "DATABASE_URL", "SMTP_")):
                monkeypatch.delenv(name)
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-fake")
        monkeypatch.setenv("SLACK_SIGNING_SECRET", "secret")
        monkeypatch.setenv("SLACK_API_URL", f"{url}/api/")
        monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/cli.db")
        yield slack


async def run(*argv: str) -> int:
    # The command runs its own event loop, so it runs in a thread here.
    return await asyncio.to_thread(main, list(argv))


async def test_chatflows_add_then_list(
    operator_env: FakeSlack, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run("chatflows", "add", "--name", "Website", "--route", "U0ALICE") == 0
    created = capsys.readouterr().out
    assert "public key:" in created and "signing secret:" in created
    assert await run("chatflows", "list") == 0
    assert "Website" in capsys.readouterr().out


async def test_chatflows_add_refuses_what_the_admin_modal_refuses_and_creates_nothing(
    operator_env: FakeSlack, capsys: pytest.CaptureFixture[str]
) -> None:
    too_long = "x" * 3001
    add = ("chatflows", "add", "--name", "Website", "--route", " , ", "--away-message", too_long)
    assert await run(*add) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("slackrouter: error: chatflow route: route chats to at least one")
    assert "away_message: at most 3,000 characters (3,001 given)" in error
    assert len(error.splitlines()) == 1
    assert await run("chatflows", "list") == 0
    assert "Website" not in capsys.readouterr().out


async def test_contacts_import_all_or_nothing_with_line_numbers(
    operator_env: FakeSlack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "email,name,owner,visitor_ids\n"
        "nora@example.com,Nora,alice@acme.example,v1\n"
        "not-an-email,Eve,U0ALICE,v2\n"
        "sam@example.com,Sam,nobody@acme.example,v3\n"
    )
    assert await run("contacts", "import", str(bad)) == 1
    errors = capsys.readouterr().err
    assert "nothing imported" in errors
    assert "line 3" in errors and "line 4" in errors and "line 2" not in errors
    good = tmp_path / "good.csv"
    good.write_text("email,name,owner,visitor_ids\nnora@example.com,Nora,alice@acme.example,v1\n")
    assert await run("contacts", "import", str(good)) == 0
    assert "1 contacts created" in capsys.readouterr().out


async def test_a_bad_setting_stops_with_one_line_and_no_traceback(
    operator_env: FakeSlack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PORT", "eighty")
    assert await run("migrate") == 2
    error = capsys.readouterr().err
    assert error.strip() == (
        "slackrouter: error: PORT: expected an integer from 1 to 65535, got 'eighty'"
    )
