"""`slackrouter demo` as a newcomer runs it: a real process, then the steps it prints."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import httpx
import pytest

from slackrouter.sandbox.processes import free_port


@pytest.mark.slow
async def test_the_demo_runs_the_whole_loop_without_slack(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DATABASE_URL"))}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "slackrouter",
        "demo",
        "--port",
        str(port),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        printed = ""
        assert process.stdout is not None
        while "Press Ctrl-C" not in printed:
            line = await asyncio.wait_for(process.stdout.readline(), 30)
            assert line, f"the demo exited early:\n{printed}"
            printed += line.decode()
        app_url = f"http://127.0.0.1:{port}"
        slack_url = re.search(r"sandbox Slack \(workspace \"Demo Co\"\): +(\S+)", printed)[1]
        key = re.search(r"public key: +(\S+)", printed)[1]
        async with httpx.AsyncClient(timeout=30) as http:
            # The two pages the instructions lead with: the website with the widget, and the
            # sandbox Slack where the newcomer answers as a rep.
            website = re.search(r"the website, with the chat widget: +(\S+)", printed)[1]
            sandbox = re.search(r"the sandbox Slack, for the reps: +(\S+)", printed)[1]
            assert (website, sandbox) == (f"{app_url}/demo", f"{slack_url}/sandbox/")
            page = (await http.get(app_url, follow_redirects=True)).text
            assert f'<script src="/widget.js" data-chatflow="{key}" async>' in page
            assert "<title>Sandbox Slack</title>" in (await http.get(sandbox)).text
            assert (await http.get(f"{app_url}/widget.js")).status_code == 200
            accepted = (
                await http.post(
                    f"{app_url}/v1/chatflows/{key}/messages",
                    json={"visitor_id": "v1", "client_message_id": "m1", "text": "Hi!"},
                )
            ).json()
            assert accepted["status"] == "routed"
            assert sorted(a["name"] for a in accepted["agents"]) == ["Alice", "Bob"]
            for _ in range(100):
                state = (await http.get(f"{slack_url}/sandbox/state")).json()
                dm = next((c for c in state["channels"] if c["id"] == "DU0ALICE"), None)
                if dm and dm["messages"]:
                    break
                await asyncio.sleep(0.1)
            replied = await http.post(
                f"{slack_url}/sandbox/reply",
                json={
                    "user": "U0ALICE",
                    "channel": "DU0ALICE",
                    "thread_ts": "latest",
                    "text": "Hello from Alice",
                },
            )
            assert replied.json()["ok"], replied.text
            page = (
                await http.get(
                    f"{app_url}/v1/conversations/{accepted['conversation_id']}/messages",
                    params={"wait": 10, "after": 1},
                    headers={"Authorization": f"Bearer {accepted['conversation_token']}"},
                )
            ).json()
            assert [m["text"] for m in page["messages"]] == ["Hello from Alice"]
        assert (tmp_path / "var" / "demo.db").exists()
    finally:
        process.terminate()
        await process.wait()
