"""The load generator, a process of its own: `python -m bench.load JOB.json`.

It runs one job and prints its result as one JSON line on stdout:
- `saturate`: `connections` clients post visitor messages back to back for `seconds` (after a
  warm-up); counts the answers by status.
- `paced`: visitor messages at a fixed `rate` (open loop: each request is timed from when it was
  due, so a slow server cannot slow the generator down and hide its own latency).
- `relay`: holds one event stream per conversation, then sends reps' signed thread replies to
  `/slack/events` at `rate`; times each from when it was due to when its stream shows it.
- `streams`: opens one event stream per conversation, prints `{"ready": ...}` once every stream
  is answered (or `open_within` seconds have passed), holds them until stdin closes, then prints
  the final line.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.wire import Connection, WireError, json_post, request_bytes
from slackrouter.sandbox.slack_requests import SlackRequestSender, message_event, sign

Job = dict[str, Any]


def raise_open_files_limit() -> None:
    """Thousands of sockets need more than the usual soft limit of file descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- visitor messages -----------------------------------------------------------------------


@dataclass(frozen=True)
class Visitors:
    """Request `i` is a message of one of `visitors` visitors who write in turn, so that one
    visitor's messages are never in flight together; each writes `messages_each` messages, the
    first of which starts (and routes) a conversation."""

    host: str
    public_key: str
    prefix: str
    visitors: int
    messages_each: int

    def request(self, i: int) -> bytes:
        block, within = divmod(i, self.visitors * self.messages_each)
        message, visitor = divmod(within, self.visitors)
        body = {
            "visitor_id": f"{self.prefix}-{block}-{visitor}",
            "client_message_id": f"m{message}",
            "text": f"Hello, do you ship to Norway? ({i})",
        }
        return json_post(f"/v1/chatflows/{self.public_key}/messages", body, host=self.host)


def _visitors(job: Job) -> Visitors:
    return Visitors(
        host=job["host"],
        public_key=job["public_key"],
        prefix=job["prefix"],
        visitors=int(job.get("visitors", 256)),
        messages_each=int(job.get("messages_each", 4)),
    )


class Pool:
    """Idle keep-alive connections to one server; opens more when all are busy."""

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._idle: list[Connection] = []
        self.opened = 0

    async def exchange(self, request: bytes) -> int:
        connection = self._idle.pop() if self._idle else await self._open()
        try:
            answer = await connection.exchange(request)
        except (WireError, OSError):
            connection.close()
            raise
        self._idle.append(connection)
        return answer.status

    async def _open(self) -> Connection:
        self.opened += 1
        return await Connection.open(self._host, self._port)

    def close(self) -> None:
        for connection in self._idle:
            connection.close()


async def saturate(job: Job) -> dict[str, Any]:
    visitors = _visitors(job)
    warm_up, seconds = float(job["warm_up"]), float(job["seconds"])
    counter = itertools.count()
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    loop = asyncio.get_running_loop()
    start = loop.time()
    window = (start + warm_up, start + warm_up + seconds)

    async def client() -> None:
        connection = await Connection.open(job["host"], int(job["port"]))
        try:
            while loop.time() < window[1]:
                try:
                    answer = await connection.exchange(visitors.request(next(counter)))
                except (WireError, OSError) as exc:
                    errors[type(exc).__name__] += 1
                    connection.close()
                    connection = await Connection.open(job["host"], int(job["port"]))
                    continue
                if window[0] <= loop.time() < window[1]:
                    statuses[answer.status] += 1
        finally:
            connection.close()

    await asyncio.gather(*(client() for _ in range(int(job["connections"]))))
    return {
        "accepted": statuses[201],
        "per_second": statuses[201] / seconds,
        "statuses": {str(k): v for k, v in statuses.items()},
        "errors": dict(errors),
        "sent": next(counter),
    }


async def _paced(rate: float, count: int, send: Callable[[int, float], Any]) -> None:
    """Start `send(i, due)` for i in 0..count-1 at `rate` per second, each when it is due."""
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    tasks = []
    for i in range(count):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(i, due)))
    await asyncio.gather(*tasks)


async def paced(job: Job) -> dict[str, Any]:
    visitors = _visitors(job)
    pools = [Pool(job["host"], int(port)) for port in job["ports"]]
    rate, count = float(job["rate"]), int(float(job["rate"]) * float(job["seconds"]))
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    loop = asyncio.get_running_loop()

    async def send(i: int, due: float) -> None:
        try:
            status = await pools[i % len(pools)].exchange(visitors.request(i))
        except (WireError, OSError) as exc:
            errors[type(exc).__name__] += 1
            return
        statuses[status] += 1
        if status == 201:
            latencies.append((loop.time() - due) * 1000)

    await _paced(rate, count, send)
    for pool in pools:
        pool.close()
    return {
        "latencies_ms": latencies,
        "statuses": {str(k): v for k, v in statuses.items()},
        "errors": dict(errors),
        "connections": sum(pool.opened for pool in pools),
    }


# --- event streams --------------------------------------------------------------------------


@dataclass
class Streams:
    """One held event stream per conversation; `seen` records when each text arrived."""

    host: str
    port: int
    conversations: list[tuple[str, str]]
    seen: dict[str, float] = field(default_factory=dict)
    ready: int = 0
    open_now: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    news: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def open(self, *, within: float, concurrency: int = 16) -> None:
        """Open every stream; returns once each is answered or failed, or after `within`
        seconds (those still opening go on)."""
        gate = asyncio.Semaphore(concurrency)
        answered = [asyncio.Event() for _ in self.conversations]
        for (conversation_id, token), event in zip(self.conversations, answered, strict=True):
            self._tasks.append(asyncio.create_task(self._hold(conversation_id, token, event, gate)))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await asyncio.gather(*(event.wait() for event in answered))

    async def _hold(
        self, conversation_id: str, token: str, answered: asyncio.Event, gate: asyncio.Semaphore
    ) -> None:
        request = request_bytes(
            "GET",
            f"/v1/conversations/{conversation_id}/stream?token={token}",
            host=f"{self.host}:{self.port}",
            headers={"Accept": "text/event-stream"},
        )
        loop = asyncio.get_running_loop()
        connection: Connection | None = None
        try:
            async with gate:
                connection = await Connection.open(self.host, self.port)
                await connection.open_stream(request)
                self.ready += 1
                self.open_now += 1
                answered.set()
            try:
                async for event in connection.events():
                    text = json.loads(event.data).get("text") or ""
                    self.seen.setdefault(text, loop.time())
                    self.news.set()
            finally:
                self.open_now -= 1
        except (WireError, OSError) as exc:
            self.failed[type(exc).__name__] += 1
        finally:
            answered.set()
            if connection is not None:
                connection.close()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _conversations(job: Job) -> list[tuple[str, str]]:
    return [(str(c), str(t)) for c, t in job["conversations"]]


async def streams(job: Job) -> dict[str, Any]:
    held = Streams(job["host"], int(job["port"]), _conversations(job))
    await held.open(within=float(job["open_within"]))
    print(json.dumps({"ready": held.ready, "failed": dict(held.failed)}), flush=True)
    await asyncio.to_thread(sys.stdin.buffer.read)
    still = held.open_now
    await held.close()
    return {"open_when_released": still, "failed": dict(held.failed)}


def _slack_timestamps() -> Iterator[str]:
    """Slack-style message timestamps, unique and increasing."""
    last = 0
    while True:
        micros = max(int(time.time() * 1_000_000), last + 1)
        last = micros
        yield f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


async def relay(job: Job) -> dict[str, Any]:
    threads: list[dict[str, str]] = job["threads"]
    held = Streams(
        job["host"],
        int(job["port"]),
        [(t["conversation_id"], t["token"]) for t in threads],
    )
    await held.open(within=60)
    if held.failed or held.ready < len(threads):
        raise SystemExit(f"event streams failed to open: {dict(held.failed)}")
    secret: str = job["signing_secret"]
    sender = SlackRequestSender("", secret, job["team_id"])
    pool = Pool(job["host"], int(job["port"]))
    host = f"{job['host']}:{job['port']}"
    timestamps = _slack_timestamps()
    rate, count = float(job["rate"]), int(job["count"])
    due_at: dict[str, float] = {}
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()

    async def send(i: int, due: float) -> None:
        thread = threads[i % len(threads)]
        text = f"reply {job['prefix']}-{i}"
        due_at[text] = due
        ts = next(timestamps)
        event = message_event(
            thread["user"], thread["channel"], text, ts, thread["thread_ts"], "im"
        )
        body = json.dumps(sender.envelope_for(event)).encode()
        stamp = int(time.time())
        request = request_bytes(
            "POST",
            "/slack/events",
            host=host,
            body=body,
            headers={
                "Content-Type": "application/json",
                "X-Slack-Request-Timestamp": str(stamp),
                "X-Slack-Signature": sign(secret, stamp, body),
            },
        )
        try:
            statuses[await pool.exchange(request)] += 1
        except (WireError, OSError) as exc:
            errors[type(exc).__name__] += 1

    await _paced(rate, count, send)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(float(job["settle"])):
            while not due_at.keys() <= held.seen.keys():
                held.news.clear()
                await held.news.wait()
    await held.close()
    pool.close()
    return {
        "latencies_ms": [
            (held.seen[t] - due) * 1000 for t, due in due_at.items() if t in held.seen
        ],
        "lost": sum(1 for t in due_at if t not in held.seen),
        "statuses": {str(k): v for k, v in statuses.items()},
        "errors": dict(errors),
    }


JOBS = {"saturate": saturate, "paced": paced, "relay": relay, "streams": streams}


def main() -> None:
    raise_open_files_limit()
    job: Job = json.loads(Path(sys.argv[1]).read_text())
    result = asyncio.run(JOBS[job["kind"]](job))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
