"""Delivery alone, draining a backlog: what a Slack post costs the worker process.

    python -m bench.delivery [--database sqlite|postgresql] [--load 5] [--seconds 15]

It starts the fake Slack and the app (`slackrouter run` and its worker process) as the ingest
figure does, sends visitor messages for `--load` seconds as fast as the app takes them (a
quarter of them new chats, round robin over 40 reps), then, with nothing else sent, counts the
posts the fake Slack receives and the worker process's CPU for `--seconds`. Slack takes about
one post a second in each rep's DM, so the process posts about 40 a second whatever it costs;
during the ingest figure that cost is taken from the core the batch writer needs. Steadier
than the ingest figure: run it on two versions, alternately, to see whether a change to
delivery pays.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from bench.stack import HOST, cpu_seconds, reps, round_robin_app, run_load

REPS = reps(40, "DLV")


async def measure(kind: str, load: float, seconds: float) -> tuple[int, int, float]:
    """(messages sent, posts made while measuring, delivery CPU seconds while measuring)."""
    workdir = Path(tempfile.mkdtemp(prefix="slackrouter-delivery-"))
    async with round_robin_app(kind, workdir, REPS, "app-delivery") as (slack, _, chatflow, app):
        sent = await run_load(
            workdir,
            {
                "kind": "saturate",
                "host": HOST,
                "port": app.port,
                "public_key": chatflow.public_key,
                "prefix": f"dlv-{uuid.uuid4().hex[:6]}",
                "connections": 64,
                "seconds": load,
                "warm_up": 0.0,
            },
        )
        [delivery] = app.process.worker_pids
        posts, cpu = len(await slack.posts()), cpu_seconds(delivery)
        await asyncio.sleep(seconds)
        posts, cpu = len(await slack.posts()) - posts, cpu_seconds(delivery) - cpu
        return int(sent["sent"]), posts, cpu


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.delivery", description=__doc__)
    parser.add_argument("--database", default="sqlite", choices=("sqlite", "postgresql"))
    parser.add_argument("--load", type=float, default=5.0, help="seconds of messages sent")
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds measured after")
    args = parser.parse_args()
    started = time.perf_counter()
    sent, posts, cpu = asyncio.run(measure(args.database, args.load, args.seconds))
    per_post = f"{1000 * cpu / posts:.1f}" if posts else "-"
    print(
        f"{args.database}: {posts / args.seconds:.1f} posts/s, {per_post} ms of delivery CPU a "
        f"post ({posts} posts in {args.seconds:g} s after {sent} messages; "
        f"{time.perf_counter() - started:.0f} s in all)"
    )


if __name__ == "__main__":
    main()
