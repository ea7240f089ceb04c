"""Real processes for the resilience tests: the fake Slack (`python -m slackrouter.sandbox`),
`slackrouter run` (started, killed, restarted), a fresh database per test, visitors that load the
app concurrently, and the figures: accepted, delivered, lost, duplicated."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from slackrouter.adapters.db.models import Message, OutboxItem
from slackrouter.sandbox.processes import HOST as HOST  # for the tests
from slackrouter.sandbox.processes import AppProcess, ChildProcess, eventually, start_fake_slack
from slackrouter.sandbox.processes import free_port as free_port  # for the tests
from slackrouter.sandbox.scratch_database import ScratchDatabase, scratch_database
from tests.conftest import POSTGRES_URL

SIGNING_SECRET = "resilience-signing-secret-0123456789"
TAG = re.compile(r"msg-[0-9a-f]{12}")


def new_tag() -> str:
    """A marker put in a visitor message's text, so its posts in Slack can be counted."""
    return f"msg-{uuid.uuid4().hex[:12]}"


def reps(count: int, prefix: str = "U0REP") -> tuple[str, ...]:
    return tuple(f"{prefix}{n:02d}" for n in range(1, count + 1))


def members(user_ids: Iterable[str]) -> list[tuple[str, str]]:
    """Workspace members for these ids, named after them."""
    return [(user_id, f"Rep {user_id[-2:]}") for user_id in user_ids]


# --- the fake Slack process -----------------------------------------------------------------


@dataclass(frozen=True)
class Post:
    """A message the app has in Slack now."""

    channel: str
    ts: str
    thread_ts: str | None
    text: str

    @property
    def tags(self) -> list[str]:
        return TAG.findall(self.text)


@dataclass(frozen=True)
class OutageCounts:
    """Calls to one method that outages answered with an error (`refused`), held (`held`),
    and hold right now (`holding`)."""

    refused: int
    held: int
    holding: int

    def since(self, earlier: OutageCounts) -> OutageCounts:
        """The calls refused and held after `earlier` was read (and those held now)."""
        return OutageCounts(self.refused - earlier.refused, self.held - earlier.held, self.holding)


class SlackProcess:
    """`python -m slackrouter.sandbox` and its control API."""

    def __init__(self, process: ChildProcess, url: str) -> None:
        self.process = process
        self.url = url
        self.http = httpx.AsyncClient(base_url=url, timeout=30)

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    async def posts(self) -> list[Post]:
        body = await self._get("/sandbox/posts")
        return [Post(**post) for post in body["posts"]]

    async def outage_counts(self, method: str) -> OutageCounts:
        body = await self._get("/sandbox/outages")
        return OutageCounts(**{name: int(body[name].get(method, 0)) for name in body})

    async def calls(self, method: str) -> list[dict[str, Any]]:
        body = await self._get("/sandbox/calls", method=method)
        return list(body["calls"])

    async def outage(self, method: str, mode: str) -> None:
        """`error`, `hold` or `lost_answer` from now on; `none` ends it."""
        await self._post("/sandbox/outage", method=method, mode=mode)

    async def fail(self, method: str, *, status: int, retry_after: int, times: int) -> None:
        await self._post(
            "/sandbox/fail", method=method, status=status, retry_after=retry_after, times=times
        )

    async def rate_limit(self, per_second: float | None, *, burst: int = 3) -> None:
        await self._post("/sandbox/rate-limit", per_second=per_second, burst=burst)

    async def presence(self, user: str, presence: str) -> None:
        await self._post("/sandbox/presence", user=user, presence=presence)

    async def send_events_to(self, app_url: str) -> None:
        await self._post("/sandbox/events", url=f"{app_url}/slack/events")

    async def reply(self, user: str, channel: str, thread_ts: str, text: str) -> None:
        """`user` answers in a chat's thread; the event goes where `send_events_to` said."""
        response = await self.http.post(
            "/sandbox/reply",
            json={"user": user, "channel": channel, "thread_ts": thread_ts, "text": text},
        )
        assert response.status_code == 200, response.text

    async def _get(self, path: str, **params: str) -> dict[str, Any]:
        response = await self.http.get(path, params=params)
        response.raise_for_status()
        return dict(response.json())

    async def _post(self, path: str, **body: Any) -> None:
        response = await self.http.post(path, json=body)
        assert response.status_code == 200, response.text

    async def close(self) -> None:
        await self.http.aclose()
        self.process.stop()


@contextlib.asynccontextmanager
async def slack_process(
    workdir: Path, members: Iterable[tuple[str, str]]
) -> AsyncIterator[SlackProcess]:
    """The fake Slack as a process, with these members (`(user id, name)`)."""
    process, url = await start_fake_slack(workdir, SIGNING_SECRET, members)
    slack = SlackProcess(process, url)
    try:
        yield slack
    finally:
        await slack.close()


# --- the database ---------------------------------------------------------------------------


class Store(ScratchDatabase):
    """The app's database, as the test sees it: `url` is what the app gets as DATABASE_URL."""

    async def outbox(self, kind: str | None = None) -> list[OutboxItem]:
        async with self.sessions() as session:
            query = select(OutboxItem).order_by(OutboxItem.id)
            if kind is not None:
                query = query.where(OutboxItem.kind == kind)
            return list(await session.scalars(query))

    async def failed(self, conversation_ids: Iterable[str]) -> list[OutboxItem]:
        """The outbox rows of these conversations that were given up."""
        wanted = set(conversation_ids)
        return [
            item
            for item in await self.outbox()
            if item.status == "failed" and item.conversation_id in wanted
        ]

    async def settled(self, within: float = 90) -> None:
        """Wait until the outbox owes nothing more (every row done or failed)."""

        async def idle() -> bool:
            return await self.unfinished() == 0

        await eventually(idle, within=within, what="the outbox drains")

    async def unfinished_tags(self) -> list[str]:
        """The message tags of the Slack posts the outbox still owes."""
        async with self.sessions() as session:
            rows = await session.execute(
                select(Message.text)
                .join(OutboxItem, OutboxItem.message_id == Message.id)
                .where(
                    OutboxItem.kind.in_(("post_parent", "post_reply")),
                    OutboxItem.status.not_in(("done", "failed")),
                )
            )
            return [tag for (text,) in rows for tag in TAG.findall(text)]


@contextlib.asynccontextmanager
async def fresh_store(kind: str, workdir: Path) -> AsyncIterator[Store]:
    """An empty database, migrated by `slackrouter migrate`: a SQLite file, or a new PostgreSQL
    database (dropped at the end)."""
    async with scratch_database(
        Store, kind, workdir, server_url=POSTGRES_URL, prefix="t_"
    ) as store:
        yield store


# --- the app process ------------------------------------------------------------------------


def app_settings(store: Store, slack: SlackProcess, workdir: Path, **extra: str) -> dict[str, str]:
    """The environment of `slackrouter run` against the fake Slack and the test's database."""
    return {
        "SLACK_BOT_TOKEN": "xoxb-fake",
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url,
        "DATABASE_URL": store.url,
        "LOG_LEVEL": "INFO",
        "PRESENCE_REFRESH_INTERVAL": "3600",
        "PRESENCE_MAX_AGE": "3600",
        "DELIVERY_POLL_INTERVAL": "0.2",
        "TIMER_POLL_INTERVAL": "0.2",
        "MBOX_PATH": str(workdir / "mail.mbox"),
        # One loopback address plays every visitor here: the per-IP limit is not under test.
        "RATE_LIMIT_PER_IP": "1000000",
        **extra,
    }


@contextlib.asynccontextmanager
async def running(*apps: AppProcess) -> AsyncIterator[None]:
    """Start the apps, wait until they answer, and stop them (printing their logs' ends if the
    block failed)."""
    try:
        for app in apps:
            app.start()
        for app in apps:
            await app.ready()
        yield
    except BaseException:
        for app in apps:
            if app.log.exists():
                print(f"--- end of {app.name}'s log ---\n{app.log_tail()}")
        raise
    finally:
        for app in apps:
            app.stop()


@dataclass
class Deployment:
    """A database and a fake Slack for `slackrouter run` processes to use."""

    store: Store
    slack: SlackProcess
    workdir: Path

    def app(self, name: str = "app", **settings: str) -> AppProcess:
        return AppProcess(
            name, self.workdir, app_settings(self.store, self.slack, self.workdir, **settings)
        )


@contextlib.asynccontextmanager
async def deployment(
    kind: str, workdir: Path, people: Iterable[tuple[str, str]]
) -> AsyncIterator[Deployment]:
    """A fresh database of `kind`, migrated, and the fake Slack with these members."""
    async with fresh_store(kind, workdir) as store, slack_process(workdir, people) as slack:
        yield Deployment(store, slack, workdir)


async def until_routed(store: Store, route: Sequence[str]) -> None:
    """Wait until the app has polled the reps' presence and sees every one of them active."""
    await store.until_available(route)


# --- visitors -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outgoing:
    """A visitor message to send; `tag` is in its text."""

    visitor_id: str
    client_message_id: str
    tag: str

    @property
    def text(self) -> str:
        return f"{self.tag} from {self.visitor_id}: do you ship to Norway?"


def conversations(visitors: int, messages_each: int) -> list[list[Outgoing]]:
    """`visitors` lists of `messages_each` messages, each list one visitor's conversation."""
    run = uuid.uuid4().hex[:6]
    return [
        [Outgoing(f"visitor-{run}-{v}", f"c{m}", new_tag()) for m in range(messages_each)]
        for v in range(visitors)
    ]


@dataclass
class Load:
    """What the visitors sent and how the app answered."""

    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)  # tag: the 2xx answer
    failures: Counter[str] = field(default_factory=Counter)  # why attempts got no 2xx
    refused: dict[str, int] = field(default_factory=dict)  # tag: a final 4xx status

    @property
    def tags(self) -> set[str]:
        return set(self.accepted)

    @property
    def conversation_ids(self) -> set[str]:
        return {str(answer["conversation_id"]) for answer in self.accepted.values()}

    @property
    def server_errors(self) -> dict[str, int]:
        """The 5xx answers the visitors got (each request was sent again until answered)."""
        return {k: n for k, n in self.failures.items() if k.startswith("HTTP 5")}


async def send(
    urls: Sequence[str],
    public_key: str,
    chats: Sequence[Sequence[Outgoing]],
    load: Load,
    *,
    give_up_after: float = 90,
) -> Load:
    """Every visitor writes their messages in order, all visitors at once. A message whose
    request fails (no answer, a 5xx, a 429) is sent again with the same client message id, as a
    visitor's browser would, until it is answered; request `i` goes to `urls[i % len(urls)]`.
    A request is given a minute, longer than any wait inside the app (SQLite's busy timeout, the
    connection pool's), so that the app answers a request it cannot serve."""
    deadline = time.monotonic() + give_up_after
    counter = itertools.count()
    limits = httpx.Limits(max_connections=len(chats), max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:

        async def one(message: Outgoing) -> None:
            body = {
                "visitor_id": message.visitor_id,
                "client_message_id": message.client_message_id,
                "text": message.text,
            }
            while time.monotonic() < deadline:
                url = urls[next(counter) % len(urls)]
                try:
                    response = await http.post(
                        f"{url}/v1/chatflows/{public_key}/messages", json=body
                    )
                except httpx.TimeoutException as exc:
                    load.failures[f"timeout ({type(exc).__name__})"] += 1
                    continue
                except httpx.TransportError as exc:
                    load.failures[type(exc).__name__] += 1
                    await asyncio.sleep(0.1)
                    continue
                if response.is_success:
                    load.accepted[message.tag] = response.json()
                    return
                load.failures[f"HTTP {response.status_code}"] += 1
                if response.status_code < 500 and response.status_code != 429:
                    load.refused[message.tag] = response.status_code
                    return
                await asyncio.sleep(0.1)

        async def visitor(chat: Sequence[Outgoing]) -> None:
            for message in chat:
                await one(message)

        await asyncio.gather(*(visitor(chat) for chat in chats))
    return load


# --- figures --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    """Accepted messages against what Slack shows: `delivered` were posted at least once,
    `lost` never, `duplicated` counts the posts beyond the first."""

    test: str
    accepted: int
    delivered: int
    lost: int
    duplicated: int
    notes: tuple[tuple[str, int], ...] = ()

    def line(self) -> str:
        extra = "".join(f" {name}={value}" for name, value in self.notes)
        return (
            f"{self.test}: accepted={self.accepted} delivered={self.delivered} "
            f"lost={self.lost} duplicated={self.duplicated}{extra}"
        )


def tally(
    test: str, accepted: Iterable[str], deliveries: Iterable[Iterable[str]], **notes: int
) -> Figures:
    """Count, for each accepted message's tag, the deliveries (Slack posts, emails, webhook
    calls, each given as the tags it carries) that carry it."""
    seen = Counter(tag for delivery in deliveries for tag in set(delivery))
    wanted = set(accepted)
    return Figures(
        test=test,
        accepted=len(wanted),
        delivered=sum(1 for tag in wanted if seen[tag]),
        lost=sum(1 for tag in wanted if not seen[tag]),
        duplicated=sum(seen[tag] - 1 for tag in wanted if seen[tag] > 1),
        notes=tuple(notes.items()),
    )


async def all_posted(slack: SlackProcess, tags: set[str], within: float = 90) -> list[Post]:
    """Wait until every tag is in some post; returns the posts (fails naming what is missing)."""
    missing: set[str] = set(tags)

    async def complete() -> list[Post] | None:
        nonlocal missing
        posts = await slack.posts()
        missing = tags - {tag for post in posts for tag in post.tags}
        return posts if not missing else None

    try:
        return await eventually(complete, within=within, what="every accepted message is posted")
    except TimeoutError as error:
        raise TimeoutError(f"{error}; {len(missing)} never posted") from None


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


class FiguresLog:
    """Figures printed as they are measured and collected in one file for the run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def record(self, figures: Figures) -> None:
        print(f"\nFIGURES {figures.line()}")
        with self.path.open("a") as out:
            out.write(figures.line() + "\n")
