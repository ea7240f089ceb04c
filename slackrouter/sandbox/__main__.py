"""`python -m slackrouter.sandbox`: the fake Slack as a process of its own, with a control API.

    python -m slackrouter.sandbox --port 0 --url-file slack.url --signing-secret S \\
        --events-url http://127.0.0.1:8000/slack/events --rep U0ALICE=Alice --rep U0BOB=Bob

Serves Slack's Web API at `<url>/api/`, the fake's `/sandbox/*` API (`fake_slack.py`) and the
controls to break it (`control.py`). With `--port 0` a free port is taken; `--url-file` receives
the base URL once the server listens. Each `--rep ID=Name` is a member (active, with an email
address `<name>@example.com`); without any, Alice, Bob and Carol. Runs until SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Sequence
from pathlib import Path

from slackrouter.sandbox.control import controlled
from slackrouter.sandbox.fake_slack import FakeSlack
from slackrouter.sandbox.server import serve

DEFAULT_REPS = ("U0ALICE=Alice", "U0BOB=Bob", "U0CAROL=Carol")


def _rep(value: str) -> tuple[str, str]:
    user_id, sep, name = value.partition("=")
    if not sep or not user_id.isalnum() or not name.strip():
        raise argparse.ArgumentTypeError(f"expected ID=Name, got {value!r}")
    return user_id, name.strip()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m slackrouter.sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 (the default): a free port")
    parser.add_argument("--url-file", type=Path, help="where to write the base URL once serving")
    parser.add_argument("--signing-secret", required=True, help="the app's signing secret")
    parser.add_argument("--events-url", help="the app's /slack/events URL (also settable later)")
    parser.add_argument("--rep", type=_rep, action="append", help="a member, ID=Name")
    return parser


def workspace(reps: Sequence[tuple[str, str]]) -> FakeSlack:
    slack = FakeSlack()
    for user_id, name in reps:
        handle = name.lower().replace(" ", ".")
        slack.add_user(
            user_id,
            handle,
            real_name=name,
            display_name=name.split()[0],
            email=f"{handle}@example.com",
        )
    return slack


async def run(args: argparse.Namespace) -> None:
    slack = workspace(args.rep or [_rep(r) for r in DEFAULT_REPS])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    app = controlled(slack, signing_secret=args.signing_secret)
    async with serve(app, host=args.host, port=args.port) as url:
        if args.events_url:
            slack.configure_events(args.events_url, args.signing_secret, hooks_url=f"{url}/hooks")
        if args.url_file:
            partial = args.url_file.with_name(args.url_file.name + ".partial")
            partial.write_text(url + "\n")
            partial.replace(args.url_file)
        print(f"fake Slack serving {url} (Web API at {url}/api/)", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> None:
    asyncio.run(run(_parser().parse_args(argv)))


if __name__ == "__main__":
    main()
