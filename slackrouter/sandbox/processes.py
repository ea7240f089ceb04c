"""The app and the fake Slack as child processes on loopback, as the resilience tests
(`tests/resilience/harness.py`) and the benchmark (`bench/stack.py`) run them.

- `AppProcess`: one `slackrouter run`, which can be killed and started again on its port;
- `start_fake_slack`: `python -m slackrouter.sandbox` with the given members, and its URL;
- `ChildProcess`: any command, its output appended to a log file;
- `migrate`: `slackrouter migrate`, as a deploy step runs it;
- `eventually` and `free_port`, for waiting on them and giving them ports.

Children get this process's environment without any slackrouter setting (`clean_environment`),
so that what the shell running the tests or the benchmark has set does not reach the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

HOST = "127.0.0.1"
T = TypeVar("T")


def _first_ephemeral_port() -> int:
    """The lowest port the kernel gives outgoing connections and `bind(0)` (Linux's default if
    /proc does not say)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A loopback port nobody listens on, for a server started later (a child process).

    Taken from below the kernel's ephemeral range: a port from `bind(0)` is free only until
    the next outgoing connection or `bind(0)` anywhere on the machine, and the tests run
    in parallel, so the server that binds it a second later could find it taken. Below the
    range, only a server asking for that very port can take it.
    """
    first = _first_ephemeral_port()
    choices = range(max(1024, first - 12000), first)
    for port in random.sample(choices, k=min(200, len(choices))):
        with socket.socket() as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                continue
            return port
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


async def eventually(
    check: Callable[[], Awaitable[T]], *, within: float, what: str, interval: float = 0.2
) -> T:
    """Poll `check` until it returns something truthy; `TimeoutError` after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {within:g} s (last value: {value!r})")
        await asyncio.sleep(interval)


_SETTINGS_PREFIXES = (
    "SLACK_",
    "DATABASE_URL",
    "HOST",
    "PORT",
    "PUBLIC_URL",
    "LOG_LEVEL",
    "PRESENCE_",
    "DELIVERY_",
    "WORKER_",
    "MAX_",
    "SMTP_",
    "MAIL_FROM",
    "MBOX_PATH",
    "EMAIL_",
    "TIMER_",
    "RATE_LIMIT_",
    "SLACKROUTER_",
)


def clean_environment() -> dict[str, str]:
    """This process's environment without any slackrouter setting."""
    return {k: v for k, v in os.environ.items() if not k.startswith(_SETTINGS_PREFIXES)}


@dataclass
class ChildProcess:
    """A command run as a child process, its output appended to a log file."""

    name: str
    command: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=clean_environment)
    cwd: Path | None = None  # None: the log's folder
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as output:
            self.popen = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=self.cwd or self.log.parent,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def check_alive(self) -> None:
        if not self.running:
            raise RuntimeError(f"{self.name} exited; the end of {self.log}:\n{self.log_tail()}")

    def kill(self) -> None:
        """`kill -9`: no shutdown, no flush, nothing finished."""
        assert self.popen is not None
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if the process has not ended 15 s later."""
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()

    def log_tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


async def until_answering(process: ChildProcess, url: str, within: float = 60) -> None:
    """Wait until the web server `process` runs answers `url`/openapi.json (FastAPI's)."""
    async with httpx.AsyncClient(base_url=url, timeout=5) as http:

        async def answers() -> bool:
            process.check_alive()
            with contextlib.suppress(httpx.TransportError):
                return (await http.get("/openapi.json")).status_code == 200
            return False

        await eventually(answers, within=within, what=f"{process.name} starts", interval=0.05)


@dataclass
class AppProcess:
    """One `slackrouter run` process; `start` again after `kill` restarts it on the same port."""

    name: str
    workdir: Path
    settings: dict[str, str]
    port: int = field(default_factory=free_port)
    runs: int = 0
    process: ChildProcess = field(init=False)

    def __post_init__(self) -> None:
        self.process = ChildProcess(
            self.name,
            [sys.executable, "-m", "slackrouter", "run"],
            self.workdir / f"{self.name}.log",
            env={
                **clean_environment(),
                "HOST": HOST,
                "PORT": str(self.port),
                "PYTHONUNBUFFERED": "1",
                **self.settings,
            },
        )

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def log(self) -> Path:
        return self.process.log

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def child_pids(self) -> list[int]:
        """The process's children, as /proc lists them now."""
        try:
            children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        except OSError:
            return []
        return [int(pid) for pid in children]

    @property
    def worker_pids(self) -> list[int]:
        """The app's worker processes (`slackrouter work`) as /proc lists them now."""
        found = []
        for pid in self.child_pids:
            with contextlib.suppress(OSError):
                if b"work" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                    found.append(pid)
        return found

    def start(self) -> None:
        """Start the process (each run's output in the log after a `--- run N ---` line)."""
        assert not self.process.running, "already running"
        self.runs += 1
        with self.log.open("a") as output:
            output.write(f"--- run {self.runs} ---\n")
        self.process.start()

    async def ready(self, within: float = 60) -> None:
        """Wait until the app answers HTTP."""
        await until_answering(self.process, self.url, within)

    def kill(self) -> None:
        self.process.kill()

    def stop(self) -> None:
        self.process.stop()

    def log_tail(self, lines: int = 60) -> str:
        return self.process.log_tail(lines)


async def start_fake_slack(
    workdir: Path, signing_secret: str, members: Iterable[tuple[str, str]]
) -> tuple[ChildProcess, str]:
    """`python -m slackrouter.sandbox` with these members (`(user id, name)`), its log and URL
    file in `workdir`; returns it once it serves, with its base URL."""
    url_file = workdir / "slack.url"
    url_file.unlink(missing_ok=True)
    process = ChildProcess(
        "the fake Slack",
        [
            sys.executable,
            "-m",
            "slackrouter.sandbox",
            "--port",
            "0",
            "--url-file",
            str(url_file),
            "--signing-secret",
            signing_secret,
            *(f"--rep={user_id}={name}" for user_id, name in members),
        ],
        workdir / "slack.log",
    )
    process.start()

    async def written() -> str:
        process.check_alive()
        return url_file.read_text().strip() if url_file.exists() else ""

    try:
        url = await eventually(written, within=30, what="the fake Slack starts", interval=0.05)
    except BaseException:
        process.stop()
        raise
    return process, url


async def migrate(database_url: str, workdir: Path) -> None:
    """`slackrouter migrate`, as a deploy step runs it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "slackrouter",
        "migrate",
        env={**clean_environment(), "DATABASE_URL": database_url},
        cwd=workdir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"slackrouter migrate failed:\n{output.decode(errors='replace')}")
