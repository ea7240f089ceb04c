"""`python -m bench`: slackrouter's figures against Slack's limits and its web stack, in one run.

Runs the app (`slackrouter run`), the fake Slack and the load generators as separate processes
on loopback, on SQLite and then on PostgreSQL (a database created for the run at
BENCH_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/postgres, and dropped after
it), and prints one table. `--quick` is a smoke run with tiny sizes and one run per figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from bench import figures, routing_core
from bench.figures import FULL, QUICK, Cell, Sizes
from bench.load import raise_open_files_limit
from bench.stack import (
    App,
    Bare,
    FakeSlack,
    app_settings,
    fresh_database,
    postgres_available,
    reps,
    round_robin_app,
)

DATABASES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}

# (key, figure, target)
ROWS = (
    ("ingest", "ingest throughput: app ÷ bare endpoint", "≥ 0.5"),
    ("latency", "ingest latency p50 / p99 at half saturation", "p99 ≤ 50 ms"),
    ("calls", "Slack calls per chat ÷ minimum", "1.0, 0 presence"),
    ("relay", "relay latency p50 / p99 (reply event → stream)", "p99 ≤ 100 ms"),
    ("limits", "delivery under rate limits ÷ allowed", "≥ 0.9, 0 lost"),
    ("streams", "open streams: app RSS", "≤ 300 MB"),
    ("replicas", "replicas: CPU per chat, two ÷ one", "≤ 1.2"),
    ("routing", "routing core: decisions per second", "report"),
)

CHAT_REPS = reps(12, "CHT")
INGEST_REPS = reps(40, "ING")
REPLICA_REPS = reps(12, "REP")


class _Skip(Exception):
    """None of this group's figures was asked for."""


class Results:
    """The cells of the table, filled in as figures are measured."""

    def __init__(self, only: frozenset[str] | None = None) -> None:
        self.cells: dict[tuple[str, str], Cell] = {}
        self.only = only

    def wanted(self, *keys: str) -> bool:
        return self.only is None or bool(self.only.intersection(keys))

    async def measure(self, key: str, kind: str, measure: Callable[[], Awaitable[Cell]]) -> None:
        if not self.wanted(key) and key != "calls":
            return
        started = time.monotonic()
        print(f"  {DATABASES.get(kind, kind)}: {key} ...", end="", file=sys.stderr, flush=True)
        try:
            cell = await measure()
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            cell = Cell(f"failed: {type(exc).__name__}: {exc}".splitlines()[0][:120], False)
        self.cells[key, kind] = cell
        print(f" {cell.text} ({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)

    def skip(self, keys: tuple[str, ...], kind: str, why: str) -> None:
        for key in keys:
            self.cells.setdefault((key, kind), Cell(why))


async def main_stack(kind: str, sizes: Sizes, workdir: Path, results: Results) -> None:
    """Slack calls, relay, rate limits, open streams and (PostgreSQL) replicas: one database and
    one fake Slack; a fresh app process for each group of figures."""
    limit_reps = reps(sizes.limit_channels, "LIM")
    slack = FakeSlack(workdir, CHAT_REPS + limit_reps + REPLICA_REPS)
    await slack.start()
    try:
        async with (
            fresh_database(kind, workdir) as database,
            httpx.AsyncClient(timeout=120) as http,
        ):
            common = {"assignment": "round_robin", "escalation_seconds": 3600}
            chats_flow = await database.chatflow(CHAT_REPS, **common)
            limits_flow = await database.chatflow(limit_reps, **common)
            replicas_flow = await database.chatflow(REPLICA_REPS, **common)
            # Nobody on the route, so every chat is away. Slack's modal and `chatflows add` refuse
            # such a chatflow (its chats would be lost); the benchmark empties the route after.
            idle_flow = await database.chatflow(CHAT_REPS[:1], route_users=[], **common)
            settings = app_settings(database, slack, workdir)

            app = App("app", workdir, settings)
            await app.start()
            try:
                if not results.wanted("calls", "relay", "limits"):
                    raise _Skip
                await database.until_available(CHAT_REPS + limit_reps + REPLICA_REPS)
                chats: list[figures.Chat] = []

                async def calls() -> Cell:
                    cell, started = await figures.slack_calls(
                        http, slack, database, app, chats_flow, sizes.chats
                    )
                    chats.extend(started)
                    return cell

                await results.measure("calls", kind, calls)
                if chats:
                    await results.measure(
                        "relay", kind, lambda: figures.relay(workdir, sizes, database, app, chats)
                    )
                await results.measure(
                    "limits",
                    kind,
                    lambda: figures.rate_limited(http, sizes, slack, database, app, limits_flow),
                )
            except _Skip:
                pass
            finally:
                app.stop()

            if results.wanted("streams"):
                app = App("app-streams", workdir, settings)
                await app.start()
                try:
                    await results.measure(
                        "streams",
                        kind,
                        lambda: figures.open_streams(workdir, sizes, database, app, idle_flow),
                    )
                finally:
                    app.stop()

            if kind == "postgresql" and results.wanted("replicas"):
                first = App("replica-1", workdir, settings)
                second = App("replica-2", workdir, settings)
                await first.start()
                try:
                    await results.measure(
                        "replicas",
                        kind,
                        lambda: figures.replicas(
                            workdir, sizes, database, slack, first, second, replicas_flow
                        ),
                    )
                finally:
                    first.stop()
                    second.stop()
    finally:
        await slack.stop()
    results.skip(("relay",), kind, "not measured: no chats")
    results.skip(("replicas",), kind, "— (PostgreSQL only)")


async def ingest_stack(kind: str, sizes: Sizes, workdir: Path, results: Results) -> None:
    """Ingest throughput and latency, on a database of their own (they leave a backlog)."""
    async with round_robin_app(kind, workdir, INGEST_REPS, "app-ingest") as (_, _, flow, app):
        bare = Bare(workdir)
        await bare.start()
        try:
            outcome: list[figures.Ingest] = []

            async def ingest() -> Cell:
                outcome.append(
                    await figures.ingest(
                        workdir, sizes, app, bare, flow, postgres=kind == "postgresql"
                    )
                )
                return outcome[0].ratio

            await results.measure("ingest", kind, ingest)
            if outcome:
                results.cells["latency", kind] = outcome[0].latency
        finally:
            bare.stop()
    results.skip(("latency",), kind, "not measured: ingest failed")


async def routing(sizes: Sizes, results: Results) -> None:
    batch = routing_core.requests(sizes.routing_reps, sizes.routing_contacts)

    async def measure() -> Cell:
        rates = [
            routing_core.decisions_per_second(batch, sizes.routing_seconds)
            for _ in range(sizes.runs)
        ]
        return Cell(
            f"{figures.median(rates):,.0f} per CPU second ({sizes.routing_reps:,} reps, "
            f"{sizes.routing_contacts:,} contacts; in-process)"
        )

    await results.measure("routing", "core", measure)


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f", {int(line.split()[1]) / 1024 / 1024:.1f} GiB RAM"
    return f"{len(os.sched_getaffinity(0))} CPUs ({model}){memory}"


def load_average() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def table(results: Results, kinds: list[str], *, judged: bool) -> str:
    """The figures, one row each; `judged` marks each against its target."""

    def cell(key: str, kind: str) -> str:
        if key == "routing":
            found = results.cells.get(("routing", "core"))
            return "" if found is None or kind != kinds[0] else _text(found, judged)
        found = results.cells.get((key, kind))
        return "not measured" if found is None else _text(found, judged)

    header = ["figure", *(DATABASES[kind] for kind in kinds), "target"]
    rows = [[label, *(cell(key, kind) for kind in kinds), target] for key, label, target in ROWS]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(values: list[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    separator = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), separator, *(line(row) for row in rows)])


def _text(cell: Cell, judged: bool) -> str:
    mark = {True: " [ok]", False: " [MISS]", None: ""}[cell.ok] if judged else ""
    return cell.text + mark


async def run(args: argparse.Namespace, workdir: Path) -> int:
    sizes = QUICK if args.quick else FULL
    kinds = [kind.strip() for kind in args.databases.split(",") if kind.strip()]
    unknown = set(kinds) - DATABASES.keys()
    if unknown:
        print(f"bench: unknown database {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    only = frozenset(k.strip() for k in args.only.split(",") if k.strip()) if args.only else None
    if only is not None and only - {key for key, _, _ in ROWS}:
        print(
            f"bench: unknown figure {', '.join(sorted(only - {k for k, _, _ in ROWS}))}",
            file=sys.stderr,
        )
        return 2
    results = Results(only)
    started, load_before = time.monotonic(), load_average()
    print(f"bench: logs and databases in {workdir}", file=sys.stderr)
    if results.wanted("routing"):
        await routing(sizes, results)
    for kind in kinds:
        if kind == "postgresql" and not await postgres_available():
            results.skip(tuple(key for key, _, _ in ROWS), kind, "skipped: no PostgreSQL")
            continue
        for stack, name in ((main_stack, "main"), (ingest_stack, "ingest")):
            if name == "ingest" and not results.wanted("ingest", "latency"):
                continue
            if name == "main" and not results.wanted(
                "calls", "relay", "limits", "streams", "replicas"
            ):
                continue
            here = workdir / kind / name
            here.mkdir(parents=True, exist_ok=True)
            await stack(kind, sizes, here, results)
    elapsed = time.monotonic() - started
    print()
    print(
        f"slackrouter benchmark, {'quick smoke run' if args.quick else 'full run'}: "
        f"median of {sizes.runs} run(s) per figure, {elapsed:.0f} s"
    )
    print(f"machine: {machine()}; load average {load_before} before, {load_average()} after")
    print(table(results, kinds, judged=not args.quick))
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short smoke run, tiny sizes")
    parser.add_argument(
        "--databases",
        default="sqlite,postgresql",
        help="comma-separated: sqlite, postgresql (default: both, in that order)",
    )
    parser.add_argument(
        "--only",
        help="comma-separated figures to measure (" + ", ".join(k for k, _, _ in ROWS) + ")",
    )
    parser.add_argument("--workdir", help="keep logs and databases here (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir's logs")
    args = parser.parse_args()
    raise_open_files_limit()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="slackrouter-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        code = asyncio.run(run(args, workdir))
    finally:
        if not args.workdir and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
