"""A minimal HTTP/1.1 client over asyncio streams, for load generation.

httpx spends more CPU per request than the server it measures, which would make the load
generator the bottleneck on a small machine. This client writes prebuilt requests on keep-alive
connections and reads `Content-Length` or chunked answers, and Server-Sent Events.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass


class WireError(Exception):
    """The server closed the connection or answered something this client cannot read."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


@dataclass(frozen=True)
class SseEvent:
    event: str
    id: str
    data: str


def request_bytes(
    method: str,
    path: str,
    *,
    host: str,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def json_post(
    path: str, payload: object, *, host: str, headers: Mapping[str, str] | None = None
) -> bytes:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return request_bytes(
        "POST",
        path,
        host=host,
        body=body,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


class Connection:
    """One keep-alive connection; one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        return cls(reader, writer)

    async def exchange(self, request: bytes) -> Answer:
        """Send a prebuilt request and read the whole answer."""
        self._writer.write(request)
        status, headers = await self._head()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b"".join([chunk async for chunk in self._chunks()])
        else:
            body = await self._exactly(int(headers.get("content-length", "0")))
        return Answer(status, body)

    async def open_stream(self, request: bytes) -> None:
        """Send a request for an event stream and read its head; fails with WireError for an
        answer other than a chunked 200."""
        self._writer.write(request)
        status, headers = await self._head()
        if status != 200:
            raise WireError(f"stream answered HTTP {status}")
        if headers.get("transfer-encoding", "").lower() != "chunked":
            raise WireError("expected a chunked event stream")

    async def events(self) -> AsyncIterator[SseEvent]:
        """The events of a stream opened with `open_stream`, until the server ends it."""
        pending = ""
        async for chunk in self._chunks():
            pending = (pending + chunk.decode()).replace("\r\n", "\n")
            while "\n\n" in pending:
                block, pending = pending.split("\n\n", 1)
                event = _sse_event(block)
                if event is not None:
                    yield event

    def close(self) -> None:
        self._writer.close()

    async def _head(self) -> tuple[int, dict[str, str]]:
        try:
            raw = await self._reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise WireError(f"connection lost: {exc}") from None
        status_line, *header_lines = raw.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise WireError(f"not an HTTP answer: {status_line!r}")
        headers: dict[str, str] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        return int(parts[1]), headers

    async def _exactly(self, size: int) -> bytes:
        try:
            return await self._reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise WireError(f"connection lost: {exc}") from None

    async def _chunks(self) -> AsyncIterator[bytes]:
        while True:
            try:
                size_line = await self._reader.readuntil(b"\r\n")
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                raise WireError(f"connection lost: {exc}") from None
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            data = await self._exactly(size + 2)
            if size == 0:
                return
            yield data[:-2]


def _sse_event(block: str) -> SseEvent | None:
    """One event from its lines; None for a comment-only block (a ping)."""
    fields: dict[str, list[str]] = {}
    for line in block.split("\n"):
        if not line or line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields.setdefault(name, []).append(value.removeprefix(" "))
    if "data" not in fields:
        return None
    return SseEvent(
        event=(fields.get("event") or ["message"])[-1],
        id=(fields.get("id") or [""])[-1],
        data="\n".join(fields["data"]),
    )
