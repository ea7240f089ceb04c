"""The processes a benchmark runs on loopback, and the database under them.

- the fake Slack: `python -m slackrouter.sandbox`, with its control API;
- the app: `slackrouter run` (one process, or several replicas on one PostgreSQL database);
- the bare endpoint: `python -m bench.bare`;
- load generators: `python -m bench.load JOB.json`;
- a database: a SQLite file, or a PostgreSQL database created for the run and dropped after it,
  migrated with `slackrouter migrate` as a deploy step does.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
from sqlalchemy import func, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from slackrouter.adapters.db.database import create_engine, session_factory
from slackrouter.adapters.db.models import Chatflow, Conversation, OutboxItem, Rep, SlackThread
from slackrouter.clock import utcnow
from slackrouter.config import normalize_database_url
from slackrouter.services.chatflows import ChatflowSpec, create_chatflow

HOST = "127.0.0.1"
TEAM_ID = "T0001"
SIGNING_SECRET = "bench-signing-secret-5c0f1e2d3a4b"
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parent.parent  # where `python -m bench.…` finds the package
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


async def eventually(
    check: Callable[[], Awaitable[T]], *, within: float, what: str, interval: float = 0.1
) -> T:
    """Poll `check` until it returns something truthy; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {within:g} s (last value: {value!r})")
        await asyncio.sleep(interval)


def reps(count: int, prefix: str) -> tuple[str, ...]:
    return tuple(f"U{prefix}{n:04d}" for n in range(1, count + 1))


# --- /proc ----------------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


# --- processes ------------------------------------------------------------------------------

_SETTINGS_PREFIXES = (
    "SLACK_",
    "DATABASE_URL",
    "HOST",
    "PORT",
    "PUBLIC_URL",
    "LOG_LEVEL",
    "PRESENCE_",
    "DELIVERY_",
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
class Process:
    """A child process whose output goes to a log file."""

    name: str
    command: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=clean_environment)
    cwd: Path | None = None
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

    def check_alive(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            raise RuntimeError(f"{self.name} exited; the end of {self.log}:\n{self.log_tail()}")

    def stop(self) -> None:
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


async def _answers(process: Process, url: str, path: str, within: float = 60) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=5) as http:

        async def up() -> bool:
            process.check_alive()
            with contextlib.suppress(httpx.TransportError):
                return (await http.get(path)).status_code < 500
            return False

        await eventually(up, within=within, what=f"{process.name} starts", interval=0.05)


class FakeSlack:
    """`python -m slackrouter.sandbox` with these members, and its control API."""

    def __init__(self, workdir: Path, members: Iterable[str]) -> None:
        self._url_file = workdir / "slack.url"
        self._url_file.unlink(missing_ok=True)
        self.process = Process(
            "fake Slack",
            [
                sys.executable,
                "-m",
                "slackrouter.sandbox",
                "--port",
                "0",
                "--url-file",
                str(self._url_file),
                "--signing-secret",
                SIGNING_SECRET,
                *(f"--rep={user_id}=Rep{user_id[1:]}" for user_id in members),
            ],
            workdir / "slack.log",
        )
        self.url = ""
        self._http: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self.process.start()

        async def written() -> str:
            self.process.check_alive()
            return self._url_file.read_text().strip() if self._url_file.exists() else ""

        self.url = await eventually(written, within=30, what="the fake Slack starts", interval=0.05)
        self._http = httpx.AsyncClient(base_url=self.url, timeout=60)

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    @property
    def http(self) -> httpx.AsyncClient:
        assert self._http is not None, "start() first"
        return self._http

    async def calls(self) -> list[dict[str, Any]]:
        """Every Web API call the workspace answered so far, oldest first."""
        response = await self.http.get("/sandbox/calls")
        response.raise_for_status()
        return list(response.json()["calls"])

    async def posts(self) -> list[dict[str, Any]]:
        """The app's messages in the workspace now, oldest first."""
        response = await self.http.get("/sandbox/posts")
        response.raise_for_status()
        return list(response.json()["posts"])

    async def rate_limit(self, per_second: float | None, *, burst: int) -> None:
        await self._control("/sandbox/rate-limit", per_second=per_second, burst=burst)

    async def fail(self, method: str, *, status: int, retry_after: int, times: int) -> None:
        await self._control(
            "/sandbox/fail", method=method, status=status, retry_after=retry_after, times=times
        )

    async def _control(self, path: str, **body: Any) -> None:
        response = await self.http.post(path, json=body)
        if response.status_code != 200:
            raise RuntimeError(f"fake Slack {path}: {response.text}")

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        self.process.stop()


class App:
    """One `slackrouter run` process."""

    def __init__(self, name: str, workdir: Path, settings: dict[str, str]) -> None:
        self.port = free_port()
        self.process = Process(
            name,
            [sys.executable, "-m", "slackrouter", "run"],
            workdir / f"{name}.log",
            env={
                **clean_environment(),
                **settings,
                "HOST": HOST,
                "PORT": str(self.port),
                "PYTHONUNBUFFERED": "1",
            },
        )

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    async def start(self) -> None:
        self.process.start()
        await _answers(self.process, self.url, "/openapi.json")

    def stop(self) -> None:
        self.process.stop()


class Bare:
    """`python -m bench.bare`: the bare endpoint served like the app."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.process = Process(
            "bare endpoint",
            [sys.executable, "-m", "bench.bare", str(self.port)],
            workdir / "bare.log",
            cwd=ROOT,
        )

    async def start(self) -> None:
        self.process.start()
        await _answers(self.process, f"http://{HOST}:{self.port}", "/openapi.json")

    def stop(self) -> None:
        self.process.stop()


def app_settings(database: Database, slack: FakeSlack, workdir: Path) -> dict[str, str]:
    """`slackrouter run`'s environment: the fake Slack, limits raised for one loopback address
    playing every visitor, presence polled once at start (every rep at once) and fresh for the
    whole run, so that any presence call during a measurement is one made on the hot path."""
    return {
        "SLACK_BOT_TOKEN": "xoxb-fake",
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_APP_TOKEN": "",
        "SLACK_API_URL": slack.api_url,
        "DATABASE_URL": database.url,
        "PUBLIC_URL": "",
        "SMTP_HOST": "",
        "LOG_LEVEL": "WARNING",
        "RATE_LIMIT_PER_IP": "1000000",
        "RATE_LIMIT_PER_VISITOR": "100000",
        "PRESENCE_REFRESH_INTERVAL": "3600",
        "PRESENCE_MAX_AGE": "3600",
        "PRESENCE_CALLS_PER_MINUTE": "1000",
        "MBOX_PATH": str(workdir / "mail.mbox"),
    }


_job_numbers = itertools.count(1)


async def run_load(workdir: Path, job: dict[str, Any]) -> dict[str, Any]:
    """Run one load-generator job to its end; returns its result."""
    async with load_process(workdir, job) as (lines, _):
        return await next_line(lines, job["kind"])


@contextlib.asynccontextmanager
async def load_process(
    workdir: Path, job: dict[str, Any]
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A load generator running `job`: its stdout lines, and its stdin (closing it ends a
    `streams` job)."""
    path = workdir / f"job-{next(_job_numbers)}-{job['kind']}.json"
    path.write_text(json.dumps(job))
    log = path.with_suffix(".log")
    with log.open("wb") as errors:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.load",
            str(path),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=errors,
            cwd=ROOT,
            limit=1 << 24,
        )
    assert process.stdout is not None and process.stdin is not None
    try:
        yield process.stdout, process.stdin
        if not process.stdin.is_closing():
            process.stdin.close()
        if await process.wait() != 0:
            raise RuntimeError(f"load generator failed ({job['kind']}):\n{log.read_text()}")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def next_line(lines: asyncio.StreamReader, what: str) -> dict[str, Any]:
    """The next JSON line a load generator prints."""
    line = await lines.readline()
    if not line:
        raise RuntimeError(f"the load generator ({what}) ended without a result")
    return dict(json.loads(line))


# --- the database ---------------------------------------------------------------------------


@dataclass
class Database:
    """The app's database as the benchmark sees it; `url` is the app's DATABASE_URL."""

    kind: str
    url: str
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    async def chatflow(self, route: Sequence[str], **columns: Any) -> Chatflow:
        """A chatflow made with the Python API, then given `columns` (assignment, ...)."""
        chatflow = await create_chatflow(
            self.sessions,
            team_id=TEAM_ID,
            spec=ChatflowSpec(name="Website", route_users=tuple(route)),
            clock=utcnow,
        )
        if columns:
            async with self.sessions() as session, session.begin():
                await session.execute(
                    update(Chatflow).where(Chatflow.id == chatflow.id).values(**columns)
                )
        return chatflow

    async def until_available(self, user_ids: Sequence[str], within: float = 60) -> None:
        """Wait until the app has polled these reps' presence and sees each one active."""

        async def active() -> bool:
            async with self.sessions() as session:
                count = await session.scalar(
                    select(func.count())
                    .select_from(Rep)
                    .where(Rep.user_id.in_(list(user_ids)), Rep.presence == "active")
                )
            return count == len(user_ids)

        await eventually(active, within=within, what="the app sees the reps available")

    async def unfinished(self) -> int:
        """Outbox rows neither done nor failed."""
        async with self.sessions() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(OutboxItem)
                .where(OutboxItem.status.not_in(("done", "failed")))
            )
        return int(count or 0)

    async def settled(self, within: float) -> None:
        """Wait until the outbox owes nothing."""

        async def idle() -> bool:
            return await self.unfinished() == 0

        await eventually(idle, within=within, what="the outbox drains", interval=0.05)

    async def idle_conversations(self, chatflow: Chatflow, count: int) -> list[tuple[str, str]]:
        """`count` open conversations with nothing in them yet, written straight to the
        database (setting up thousands through the API would take minutes); returns
        (conversation id, token) pairs."""
        now = utcnow()
        rows = [
            Conversation(
                id=uuid.uuid4().hex,
                team_id=TEAM_ID,
                chatflow_id=chatflow.id,
                visitor_id=f"idle-{uuid.uuid4().hex}",
                token=uuid.uuid4().hex,
                routing_outcome="away",
                created_at=now,
            )
            for _ in range(count)
        ]
        async with self.sessions() as session, session.begin():
            session.add_all(rows)
        return [(row.id, row.token) for row in rows]

    async def threads(self, conversation_ids: Iterable[str]) -> list[SlackThread]:
        """The Slack threads of these conversations that have been posted."""
        async with self.sessions() as session:
            rows = await session.scalars(
                select(SlackThread).where(
                    SlackThread.conversation_id.in_(list(conversation_ids)),
                    SlackThread.thread_ts.is_not(None),
                )
            )
            return list(rows)


async def postgres_available() -> bool:
    try:
        connection = await asyncpg.connect(POSTGRES_URL, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await connection.close()
    return True


@contextlib.asynccontextmanager
async def fresh_database(kind: str, workdir: Path) -> AsyncIterator[Database]:
    """An empty, migrated database: a SQLite file, or a new PostgreSQL database (dropped at
    the end)."""
    admin: asyncpg.Connection | None = None
    name = f"slackrouter_bench_{uuid.uuid4().hex[:10]}"
    if kind == "sqlite":
        url = f"sqlite:///{workdir / (name + '.db')}"
    else:
        admin = await asyncpg.connect(POSTGRES_URL)
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    try:
        await migrate(url, workdir)
        engine = create_engine(normalize_database_url(url))
        try:
            yield Database(kind, url, engine, session_factory(engine))
        finally:
            await engine.dispose()
    finally:
        if admin is not None:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()


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
