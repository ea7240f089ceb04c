"""Each figure of the benchmark: how it is measured, and how it reads in the table."""

from __future__ import annotations

import asyncio
import contextlib
import math
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.stack import (
    HOST,
    SIGNING_SECRET,
    TEAM_ID,
    App,
    Bare,
    CpuMeter,
    Database,
    FakeSlack,
    load_process,
    next_line,
    postgres_pids,
    run_load,
)
from slackrouter.adapters.db.models import Chatflow


@dataclass(frozen=True)
class Sizes:
    runs: int
    ingest_connections: tuple[int, ...]
    ingest_seconds: float
    latency_seconds: float
    chats: int
    relay_rate: float
    relay_seconds: float
    limit_channels: int
    limit_posts_per_channel: int
    streams: int
    stream_clients: int
    stream_seconds: float  # how long the held streams' RSS is sampled
    replica_chats: int
    replica_rate: float
    routing_reps: int
    routing_contacts: int
    routing_seconds: float


# Saturation is each server's highest rate with 64 and with 256 clients at once. The app writes
# the messages that arrive while a batch is being written in the next (group commit): with 64
# clients they can all be waiting on one batch while the CPU idles (the web process was busy
# 65-70 % of the time), and with 256 it answered 38 % more (936 vs 678/s, medians of 3, SQLite).
# The bare endpoint answers as fast with 8 as with 64 (4,063 and 4,033/s) and a little slower
# with 256 (2,253 vs 2,537/s), the load generator's own work growing with its connections.
FULL = Sizes(
    runs=3,
    ingest_connections=(64, 256),
    ingest_seconds=2.5,
    latency_seconds=3,
    chats=24,
    relay_rate=100,
    relay_seconds=1.5,
    limit_channels=6,
    limit_posts_per_channel=8,
    streams=5000,
    stream_clients=4,
    stream_seconds=16.0,  # a held stream gets a keep-alive ping every 15 s: each wakes once
    replica_chats=30,
    replica_rate=20,
    routing_reps=1000,
    routing_contacts=10_000,
    routing_seconds=0.5,
)
QUICK = Sizes(
    runs=1,
    ingest_connections=(16,),
    ingest_seconds=1,
    latency_seconds=1,
    chats=4,
    relay_rate=20,
    relay_seconds=0.5,
    limit_channels=2,
    limit_posts_per_channel=5,
    streams=100,
    stream_clients=2,
    stream_seconds=1.0,
    replica_chats=6,
    replica_rate=10,
    routing_reps=100,
    routing_contacts=1000,
    routing_seconds=0.2,
)


@dataclass(frozen=True)
class Cell:
    """One figure on one database: its text, and whether it meets its target (None: no
    target, or not measured)."""

    text: str
    ok: bool | None = None


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile, `p` in 0..100."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


# --- ingest ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ingest:
    ratio: Cell
    latency: Cell


def _cpu_text(costs: list[dict[str, float]], parts: Sequence[str]) -> str:
    """Median CPU milliseconds per message: each of `parts`, and the whole machine."""
    each = " + ".join(f"{part} {median([c[part] for c in costs]):.2f}" for part in parts)
    return f"{each}, machine {median([c['machine'] for c in costs]):.2f} ms"


async def ingest(
    workdir: Path, sizes: Sizes, app: App, bare: Bare, chatflow: Chatflow, *, postgres: bool
) -> Ingest:
    """Saturation of the app and of the bare endpoint, measured in turn in each run (each
    server's highest rate over `sizes.ingest_connections` clients); then the app's latency at
    half its saturation. The CPU each message costs (per message sent, warm-up included, in the
    job that gave the highest rate) is measured alongside: the app's processes, PostgreSQL's,
    and the whole machine (the load generator and anything else running included)."""
    ratios, apps, bares = [], [], []
    groups: dict[str, dict[str, Callable[[], Iterable[int]]]] = {
        "bare": {"server": lambda: [bare.process.pid]},
        "app": {"web": lambda: [app.pid], "worker": lambda: app.process.worker_pids},
    }
    if postgres:
        groups["app"]["PostgreSQL"] = postgres_pids
    costs: dict[str, list[dict[str, float]]] = {"bare": [], "app": []}
    for run in range(sizes.runs):
        rates = {}
        for name, port in (("bare", bare.port), ("app", app.port)):
            best: tuple[float, dict[str, float]] = (0.0, {})
            for connections in sizes.ingest_connections:
                meter = CpuMeter(groups[name])
                meter.start()
                result = await run_load(
                    workdir,
                    {
                        "kind": "saturate",
                        "host": HOST,
                        "port": port,
                        "public_key": chatflow.public_key,
                        "prefix": f"{name}-{run}-{connections}-{uuid.uuid4().hex[:6]}",
                        "connections": connections,
                        "seconds": sizes.ingest_seconds,
                        "warm_up": min(1.0, sizes.ingest_seconds),
                    },
                )
                sent = max(1, int(result["sent"]))
                cost = {k: 1000 * v / sent for k, v in meter.used().items()}
                best = max(best, (float(result["per_second"]), cost), key=lambda b: b[0])
            rates[name] = best[0]
            costs[name].append(best[1])
        apps.append(rates["app"])
        bares.append(rates["bare"])
        ratios.append(rates["app"] / rates["bare"] if rates["bare"] else math.nan)
    saturation = median(apps)
    ratio = median(ratios)
    p50s, p99s = [], []
    rate = max(1.0, saturation / 2)
    for run in range(sizes.runs):
        result = await run_load(
            workdir,
            {
                "kind": "paced",
                "host": HOST,
                "ports": [app.port],
                "public_key": chatflow.public_key,
                "prefix": f"paced-{run}-{uuid.uuid4().hex[:6]}",
                "rate": rate,
                "seconds": sizes.latency_seconds,
            },
        )
        latencies = result["latencies_ms"]
        p50s.append(percentile(latencies, 50))
        p99s.append(percentile(latencies, 99))
    p99 = median(p99s)
    return Ingest(
        ratio=Cell(
            f"{ratio:.2f} (app {saturation:,.0f}/s ÷ bare {median(bares):,.0f}/s; CPU per "
            f"message: app {_cpu_text(costs['app'], list(groups['app']))}; "
            f"bare {_cpu_text(costs['bare'], ['server'])})",
            ratio >= 0.5,
        ),
        latency=Cell(f"{median(p50s):.0f} / {p99:.0f} ms at {rate:,.0f}/s", p99 <= 50),
    )


# --- chats: Slack calls per chat, relay latency -----------------------------------------------


@dataclass(frozen=True)
class Chat:
    conversation_id: str
    token: str


async def start_chats(
    http: httpx.AsyncClient, app: App, chatflow: Chatflow, count: int, messages_each: int = 1
) -> list[Chat]:
    """`count` visitors write `messages_each` messages each, all visitors at once."""
    prefix = uuid.uuid4().hex[:8]

    async def visitor(n: int) -> Chat:
        answer: dict[str, Any] = {}
        for m in range(messages_each):
            response = await http.post(
                f"{app.url}/v1/chatflows/{chatflow.public_key}/messages",
                json={
                    "visitor_id": f"{prefix}-{n}",
                    "client_message_id": f"m{m}",
                    "text": f"Hello ({prefix}-{n}-{m})",
                },
            )
            response.raise_for_status()
            answer = answer or response.json()
        return Chat(answer["conversation_id"], answer["conversation_token"])

    return list(await asyncio.gather(*(visitor(n) for n in range(count))))


async def quiet(slack: FakeSlack, *, within: float = 60, still: float = 1.0) -> int:
    """Wait until the app makes no Slack call for `still` seconds; returns the calls so far."""
    deadline = time.monotonic() + within
    count = len(await slack.calls())
    while time.monotonic() < deadline:
        await asyncio.sleep(still)
        now = len(await slack.calls())
        if now == count:
            return count
        count = now
    raise RuntimeError(f"the app kept calling Slack for {within:g} s")


async def slack_calls(
    http: httpx.AsyncClient,
    slack: FakeSlack,
    database: Database,
    app: App,
    chatflow: Chatflow,
    count: int,
) -> tuple[Cell, list[Chat]]:
    """Web API calls made for `count` new chats, against the minimum: one post per notified
    rep, one conversations.open per rep in this process's life."""
    before = await quiet(slack)
    chats = await start_chats(http, app, chatflow, count)
    await database.settled(within=120)
    calls = (await slack.calls())[before:]
    methods = Counter(call["method"] for call in calls)
    threads = await database.threads(chat.conversation_id for chat in chats)
    minimum = len(threads) + len({thread.rep_user_id for thread in threads})
    presence = methods["users.getPresence"]
    others = sum(methods.values()) - methods["chat.postMessage"] - methods["conversations.open"]
    ratio = len(calls) / minimum
    text = (
        f"{ratio:.2f} ({len(calls)} calls for {count} chats, minimum {minimum}: "
        f"{methods['chat.postMessage']} posts, {methods['conversations.open']} opens, "
        f"{presence} presence, {others - presence} other)"
    )
    return Cell(text, ratio <= 1.0 and presence == 0), chats


async def relay(
    workdir: Path, sizes: Sizes, database: Database, app: App, chats: Sequence[Chat]
) -> Cell:
    """Reps' signed thread replies at `relay_rate`, each timed until the visitor's stream
    shows it."""
    tokens = {chat.conversation_id: chat.token for chat in chats}
    job_threads = [
        {
            "conversation_id": thread.conversation_id,
            "token": tokens[thread.conversation_id],
            "channel": thread.channel_id,
            "thread_ts": thread.thread_ts,
            "user": thread.rep_user_id,
        }
        for thread in await database.threads(tokens)
    ]
    p50s, p99s, lost, refused = [], [], 0, 0
    for run in range(sizes.runs):
        result = await run_load(
            workdir,
            {
                "kind": "relay",
                "host": HOST,
                "port": app.port,
                "signing_secret": SIGNING_SECRET,
                "team_id": TEAM_ID,
                "threads": job_threads,
                "prefix": f"{run}-{uuid.uuid4().hex[:6]}",
                "rate": sizes.relay_rate,
                "count": int(sizes.relay_rate * sizes.relay_seconds),
                "settle": 30,
            },
        )
        p50s.append(percentile(result["latencies_ms"], 50))
        p99s.append(percentile(result["latencies_ms"], 99))
        lost += int(result["lost"])
        refused += sum(n for status, n in result["statuses"].items() if status != "200")
    p99 = median(p99s)
    text = f"{median(p50s):.0f} / {p99:.0f} ms at {sizes.relay_rate:g}/s"
    if lost or refused:
        text += f" ({lost} never arrived, {refused} events refused)"
    return Cell(text, p99 <= 100 and not lost)


# --- delivery under rate limits -------------------------------------------------------------

RATE, BURST = 1.0, 3
STREAM_OPEN_WITHIN = 45.0  # seconds; streams not answered by then count as not held


async def rate_limited(
    http: httpx.AsyncClient,
    sizes: Sizes,
    slack: FakeSlack,
    database: Database,
    app: App,
    chatflow: Chatflow,
) -> Cell:
    """The fake Slack allows one post per second per channel (bursts of 3) and answers 429
    beyond, plus a few 429s of its own; chats to `limit_channels` reps make
    `limit_posts_per_channel` posts in each DM. The figure is the delivery rate against what
    the limits allow: (posts - burst) ÷ rate seconds per channel, from the first message."""
    messages_each = 4
    per_channel = max(1, sizes.limit_posts_per_channel // messages_each)
    chats_count = per_channel * sizes.limit_channels
    await slack.rate_limit(RATE, burst=BURST)
    ratios, lost, duplicated, limited = [], 0, 0, 0
    try:
        for _ in range(sizes.runs):
            await asyncio.sleep(BURST / RATE)  # every bucket full again
            known = {post["ts"] for post in await slack.posts()}
            calls_before = len(await slack.calls())
            await slack.fail("chat.postMessage", status=429, retry_after=1, times=2)
            start = time.time()
            await start_chats(http, app, chatflow, chats_count, messages_each)
            await database.settled(within=300)
            posts = [post for post in await slack.posts() if post["ts"] not in known]
            calls = (await slack.calls())[calls_before:]
            limited += sum(1 for call in calls if call["status"] == 429)
            sent = chats_count * messages_each
            lost += max(0, sent - len(posts))
            duplicated += max(0, len(posts) - sent)
            by_channel = Counter(post["channel"] for post in posts)
            allowed = max(max(0, n - BURST) / RATE for n in by_channel.values())
            took = max(float(post["ts"]) for post in posts) - start
            ratios.append(allowed / took if took > 0 else math.nan)
    finally:
        await slack.rate_limit(None, burst=BURST)
    ratio = median(ratios)
    text = f"{ratio:.2f} ({lost} lost, {duplicated} duplicated, {limited} answered 429)"
    return Cell(text, ratio >= 0.9 and lost == 0)


# --- open streams ---------------------------------------------------------------------------


async def open_streams(
    workdir: Path, sizes: Sizes, database: Database, app: App, chatflow: Chatflow
) -> Cell:
    """RSS of the app while `streams` visitors hold an event stream open, split over several
    client processes: sampled `runs` times across `sizes.stream_seconds` (in a full run, one
    whole wait cycle of the streams: each held stream wakes up once in it); also the app's CPU
    while they are held."""
    conversations = await database.idle_conversations(chatflow, sizes.streams)
    idle = app.rss_mb()
    clients = sizes.stream_clients
    async with contextlib.AsyncExitStack() as stack:
        opening = time.monotonic()
        generators = [
            await stack.enter_async_context(
                load_process(
                    workdir,
                    {
                        "kind": "streams",
                        "host": HOST,
                        "port": app.port,
                        "conversations": conversations[k::clients],
                        "open_within": STREAM_OPEN_WITHIN,
                    },
                )
            )
            for k in range(clients)
        ]
        ready = [await next_line(lines, "streams") for lines, _ in generators]
        opened = time.monotonic() - opening
        answered = sum(int(r["ready"]) for r in ready)
        cpu_before, clock = app.cpu_seconds(), time.monotonic()
        rss = []
        for _ in range(sizes.runs):
            await asyncio.sleep(sizes.stream_seconds / sizes.runs)
            rss.append(app.rss_mb())
        cpu = (app.cpu_seconds() - cpu_before) / (time.monotonic() - clock)
        held = 0
        for lines, stdin in generators:
            stdin.close()
            held += int((await next_line(lines, "streams"))["open_when_released"])
    text = (
        f"{median(rss):,.0f} MB with {held:,} of {sizes.streams:,} streams open "
        f"(idle {idle:,.0f} MB; {answered:,} answered in the first {opened:.0f} s; "
        f"app CPU {cpu * 100:.0f}% while held)"
    )
    met = median(rss) <= 300 and held == sizes.streams
    return Cell(text, met if sizes.streams >= 5000 else None)


# --- replicas -------------------------------------------------------------------------------


async def replicas(
    workdir: Path,
    sizes: Sizes,
    database: Database,
    slack: FakeSlack,
    first: App,
    second: App,
    chatflow: Chatflow,
) -> Cell:
    """CPU seconds per chat of the app processes, one replica against two on one PostgreSQL
    database, runs alternating; each run's window is from its first message until the outbox
    is drained."""
    per_chat: dict[int, list[float]] = {1: [], 2: []}
    for run in range(sizes.runs):
        for count in (1, 2):
            apps = [first, second][:count]
            if count == 2:
                await second.start()
            await quiet(slack)
            before = sum(app.cpu_seconds() for app in apps)
            await run_load(
                workdir,
                {
                    "kind": "paced",
                    "host": HOST,
                    "ports": [app.port for app in apps],
                    "public_key": chatflow.public_key,
                    "prefix": f"replicas-{count}-{run}-{uuid.uuid4().hex[:6]}",
                    "rate": sizes.replica_rate,
                    "seconds": sizes.replica_chats * 2 / sizes.replica_rate,
                    "visitors": sizes.replica_chats,
                    "messages_each": 2,
                },
            )
            await database.settled(within=300)
            used = sum(app.cpu_seconds() for app in apps) - before
            per_chat[count].append(used / sizes.replica_chats)
            if count == 2:
                second.stop()
    one, two = median(per_chat[1]), median(per_chat[2])
    ratio = two / one
    text = f"{ratio:.2f} ({two * 1000:.0f} ÷ {one * 1000:.0f} ms CPU per chat)"
    return Cell(text, ratio <= 1.2)
