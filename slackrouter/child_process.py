"""The processes `slackrouter run` starts beside its web server, both ends of the link.

The web process starts each child as `python -m slackrouter <command>` and talks to it through
the child's standard streams: it writes to the child's stdin, and reads lines of JSON from its
stdout, among them, every few seconds, the child's Prometheus samples (`{"metrics": ...}`),
which the web process adds to its own at /metrics. When stdin closes, the web process has ended
and so does the child. On Linux the child is also killed with its parent (PR_SET_PDEATHSIG): a
killed app never leaves a child behind that goes on working beside the restarted app's. A child
that dies is started again.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping

from prometheus_client import generate_latest

from slackrouter.observability import REGISTRY

log = logging.getLogger(__name__)

# Seconds between a child's metrics lines: /metrics shows the child's counts this late at most,
# against the 15-60 s between a Prometheus server's scrapes. Each line wakes the child and
# renders all its samples; once a second, that was a third of what an idle worker process
# took of the CPU.
METRICS_EVERY = 5.0
RESTART_AFTER = 1.0  # seconds before a child that died is started again
STOP_WITHIN = 10.0  # seconds a stopping child has to finish its work before it is killed
_PR_SET_PDEATHSIG = 1


def json_line(message: Mapping[str, object]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


class TurnWriter:
    """Lines handed to `write` together once a turn of the event loop: one write (a system
    call) for all the lines a turn makes, on either side of the link."""

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self._write = write
        self._pending: list[bytes] = []

    def __contains__(self, line: bytes) -> bool:
        return line in self._pending

    def add(self, line: bytes) -> None:
        if not self._pending:
            asyncio.get_running_loop().call_soon(self.flush)
        self._pending.append(line)

    def flush(self) -> None:
        data, self._pending = b"".join(self._pending), []
        if data:
            self._write(data)


class ChildProcess:
    """The web process's side: starts `slackrouter <command>`, reads its lines, starts it again
    if it dies, and keeps its last metrics."""

    def __init__(self, command: str) -> None:
        self._command = command
        self._process: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self.metrics = ""  # the child's last Prometheus text

    @property
    def stdin(self) -> asyncio.WriteTransport | None:
        """The open pipe to the child's stdin, or None while the child is down."""
        process = self._process
        if process is None or process.stdin is None or process.returncode is not None:
            return None
        transport = process.stdin.transport
        return None if transport.is_closing() else transport  # type: ignore[return-value]

    async def start(self) -> None:
        await self._spawn()
        self._supervisor = asyncio.create_task(self._supervise())

    async def stop(self) -> None:
        self._stopping = True
        process = self._process
        if process is not None and process.returncode is None:
            assert process.stdin is not None
            process.stdin.close()  # the child finishes what it holds and exits
            try:
                await asyncio.wait_for(process.wait(), STOP_WITHIN)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._supervisor is not None:  # it reads the child's last lines, to the end
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._supervisor, STOP_WITHIN)

    def line(self, message: dict[str, object]) -> None:
        """A line of the child's other than its metrics."""

    def exited(self) -> None:
        """The child has ended; called before it is started again."""

    async def _spawn(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "slackrouter",
            self._command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 22,
        )
        log.info("%s process started pid=%s", self._command, self._process.pid)

    async def _supervise(self) -> None:
        while True:
            process = self._process
            assert process is not None and process.stdout is not None
            async for text in process.stdout:
                try:
                    message = json.loads(text)
                except ValueError:
                    continue
                if "metrics" in message:
                    self.metrics = str(message["metrics"])
                else:
                    self.line(message)
            code = await process.wait()
            self.exited()
            if self._stopping:
                return
            log.error("%s process exited code=%s; starting it again", self._command, code)
            await asyncio.sleep(RESTART_AFTER)
            if self._stopping:
                return
            await self._spawn()


# --- the child's side ---------------------------------------------------------------------------


def die_with_parent() -> bool:
    """Ask Linux to kill this process when its parent dies (elsewhere: stdin's end stops it).
    False if the parent died before the request took effect: the child should end now."""
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    return os.getppid() == parent


class Lines:
    """The child's stdout: lines of JSON, written without blocking the event loop, those made
    in one turn of the loop together."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._turn = TurnWriter(self._write)

    @classmethod
    async def stdout(cls) -> Lines:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, sys.stdout
        )
        return cls(asyncio.StreamWriter(transport, protocol, None, loop))

    def write(self, message: dict[str, object]) -> None:
        self._turn.add(json_line(message))

    def _write(self, data: bytes) -> None:
        if not self._writer.is_closing():
            self._writer.write(data)

    async def drain(self) -> None:
        """Until everything written has reached the pipe."""
        self._turn.flush()
        self._writer.transport.set_write_buffer_limits(0)  # type: ignore[attr-defined]
        with contextlib.suppress(ConnectionError):
            await self._writer.drain()


async def serve_child(
    handle: Callable[[bytes], None],
    work: list[Awaitable[None]],
    lines: Lines,
    *,
    finish: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Run a child until its stdin closes (the web process has ended) or SIGTERM: what is read
    from stdin goes to `handle` as it comes, the tasks of `work` run meanwhile, and the child's
    metrics are written to `lines` once a second. At the end, `finish` is awaited before the
    tasks are cancelled."""
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader(limit=1 << 22)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    async def read_stdin() -> None:
        while data := await stdin.read(1 << 16):
            handle(data)
        stop.set()  # stdin closed: the web process has ended

    async def report_metrics() -> None:
        while True:
            lines.write({"metrics": generate_latest(REGISTRY).decode()})
            await asyncio.sleep(METRICS_EVERY)

    tasks = [asyncio.ensure_future(job) for job in (read_stdin(), report_metrics(), *work)]
    try:
        await stop.wait()
        if finish is not None:
            await finish()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
