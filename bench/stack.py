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
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy import select

from slackrouter.adapters.db.models import Chatflow, Conversation, SlackThread
from slackrouter.clock import utcnow
from slackrouter.sandbox.processes import (
    HOST,
    AppProcess,
    ChildProcess,
    eventually,
    free_port,
    start_fake_slack,
    until_answering,
)
from slackrouter.sandbox.scratch_database import TEAM_ID, ScratchDatabase, scratch_database

SIGNING_SECRET = "bench-signing-secret-5c0f1e2d3a4b"
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parent.parent  # where `python -m bench.…` finds the package


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


def machine_cpu_seconds() -> float:
    """CPU time the whole machine has been busy so far, every CPU summed (from /proc/stat)."""
    ticks = [int(field) for field in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle and iowait
    return (sum(ticks[:8]) - idle) / CLOCK_TICKS


def postgres_pids() -> list[int]:
    """The PostgreSQL server's processes on this machine (its backends come and go)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
    return pids


class CpuMeter:
    """CPU seconds used by named groups of processes, and by the machine, over a window."""

    def __init__(self, groups: dict[str, Callable[[], Iterable[int]]]) -> None:
        self._groups = groups
        self._start: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        used = {"machine": machine_cpu_seconds()}
        for name, pids in self._groups.items():
            used[name] = 0.0
            for pid in pids():
                with contextlib.suppress(OSError):
                    used[name] += cpu_seconds(pid)
        return used

    def start(self) -> None:
        self._start = self._now()

    def used(self) -> dict[str, float]:
        """Seconds used by each group, and by the machine, since `start`."""
        now = self._now()
        return {name: now[name] - self._start.get(name, 0.0) for name in now}


# --- processes ------------------------------------------------------------------------------


class FakeSlack:
    """`python -m slackrouter.sandbox` with these members, and its control API."""

    def __init__(self, workdir: Path, members: Iterable[str]) -> None:
        self._workdir = workdir
        self._members = tuple(members)
        self.process: ChildProcess | None = None
        self.url = ""
        self._http: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self.process, self.url = await start_fake_slack(
            self._workdir,
            SIGNING_SECRET,
            ((user_id, f"Rep{user_id[1:]}") for user_id in self._members),
        )
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
        if self.process is not None:
            self.process.stop()


class App:
    """One `slackrouter run` process, answering once started, and the worker process it starts:
    its CPU and memory are the two's."""

    def __init__(self, name: str, workdir: Path, settings: dict[str, str]) -> None:
        self.process = AppProcess(name, workdir, settings)
        self.port = self.process.port
        self.url = self.process.url

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def pids(self) -> list[int]:
        """The web process and its children."""
        return [self.pid, *self.process.child_pids]

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids)

    def rss_mb(self) -> float:
        return sum(rss_mb(pid) for pid in self.pids)

    async def start(self) -> None:
        self.process.start()
        await self.process.ready()

    def stop(self) -> None:
        self.process.stop()


class Bare:
    """`python -m bench.bare`: the bare endpoint served like the app."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.process = ChildProcess(
            "bare endpoint",
            [sys.executable, "-m", "bench.bare", str(self.port)],
            workdir / "bare.log",
            cwd=ROOT,
        )

    async def start(self) -> None:
        self.process.start()
        await until_answering(self.process, f"http://{HOST}:{self.port}")

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


class Database(ScratchDatabase):
    """The app's database as the benchmark sees it; `url` is the app's DATABASE_URL."""

    async def chatflow(
        self, route: Sequence[str], *, name: str = "Website", **columns: Any
    ) -> Chatflow:
        """As `ScratchDatabase.chatflow`, but named "Website" by default: the name is in every
        post to Slack, and the benchmark's figures have been measured with this one."""
        return await super().chatflow(route, name=name, **columns)

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
    async with scratch_database(
        Database, kind, workdir, server_url=POSTGRES_URL, prefix="slackrouter_bench_"
    ) as database:
        yield database


@contextlib.asynccontextmanager
async def round_robin_app(
    kind: str, workdir: Path, members: Sequence[str], name: str
) -> AsyncIterator[tuple[FakeSlack, Database, Chatflow, App]]:
    """The fake Slack with `members`, a fresh database with one round-robin chatflow over them,
    and the app started on both, once it sees every member active; all stopped at the end."""
    slack = FakeSlack(workdir, members)
    await slack.start()
    try:
        async with fresh_database(kind, workdir) as database:
            chatflow = await database.chatflow(
                members, assignment="round_robin", escalation_seconds=3600
            )
            app = App(name, workdir, app_settings(database, slack, workdir))
            await app.start()
            try:
                await database.until_available(members)
                yield slack, database, chatflow, app
            finally:
                app.stop()
    finally:
        await slack.stop()
