"""The one place that builds the app: engine, Slack client, services, Bolt app, scheduler."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from slackrouter.adapters.db.database import create_engine, session_factory
from slackrouter.adapters.db.migrate import upgrade
from slackrouter.adapters.mail import Mailer, create_mailer
from slackrouter.adapters.slack.connection import connect_slack
from slackrouter.adapters.slack.gateway import SlackGateway
from slackrouter.clock import Clock, utcnow
from slackrouter.config import Settings
from slackrouter.handlers import installs, register_listeners
from slackrouter.handlers.surfaces import Surfaces
from slackrouter.services.admins import Admins
from slackrouter.services.chat_actions import ChatActions
from slackrouter.services.chatflow_admin import ChatflowAdmin
from slackrouter.services.contacts import Contacts
from slackrouter.services.conversations import ConversationReader
from slackrouter.services.delivery import DeliveryWorker
from slackrouter.services.directory import Directory
from slackrouter.services.home import HomeTabs
from slackrouter.services.notifier import FeedNotifier, PostgresFeedBridge
from slackrouter.services.overview import Overview
from slackrouter.services.presence import PresenceService
from slackrouter.services.replies import Replies
from slackrouter.services.router import Router
from slackrouter.services.timers import TimerWorker
from slackrouter.services.visitor_messages import GATHER_FOR, VisitorMessages
from slackrouter.services.workspaces import Workspaces
from slackrouter.worker_process import WorkerProcess, delivery_worker

log = logging.getLogger(__name__)

USERGROUP_REFRESH_MINUTES = 15
HOME_SWEEP_SECONDS = 30.0


@dataclass
class Runtime:
    """Everything the running app is made of; `start()`/`stop()` run the background work."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    client: AsyncWebClient
    slack: SlackGateway
    notifier: FeedNotifier
    visitor_messages: VisitorMessages | WorkerProcess
    replies: Replies
    reader: ConversationReader
    delivery: DeliveryWorker
    presence: PresenceService
    directory: Directory
    contacts: Contacts
    router: Router
    timers: TimerWorker
    mailer: Mailer
    bolt: AsyncApp
    scheduler: AsyncIOScheduler
    home: HomeTabs
    db_schema: str | None = None
    worker_process: WorkerProcess | None = None  # writes and delivers in their stead (build)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _bridge: PostgresFeedBridge | None = None

    async def migrate(self) -> None:
        await upgrade(self.engine)

    async def start(self) -> None:
        """Start delivery, the presence poller and (with an app token) the Socket Mode link."""
        if self.engine.dialect.name == "postgresql":
            dsn = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            self._bridge = PostgresFeedBridge(dsn, self.notifier, schema=self.db_schema)
            await self._bridge.start()
        if self.worker_process is not None:
            await self.worker_process.start()
        else:
            self._tasks.append(
                asyncio.create_task(self.delivery.run_forever(self.settings.delivery_poll_interval))
            )
        self._tasks.append(asyncio.create_task(self.home.run_forever(HOME_SWEEP_SECONDS)))
        self.scheduler.add_job(
            self.presence.refresh,
            "interval",
            seconds=self.settings.presence_refresh_interval,
            max_instances=1,
            coalesce=True,
            id="presence",
        )
        self.scheduler.add_job(
            self.timers.run_once,
            "interval",
            seconds=self.settings.timer_poll_interval,
            max_instances=1,
            coalesce=True,
            id="timers",
        )
        self.scheduler.add_job(
            self.directory.refresh_usergroups,
            "interval",
            minutes=USERGROUP_REFRESH_MINUTES,
            max_instances=1,
            coalesce=True,
            id="usergroups",
        )
        self.scheduler.start()
        self._tasks.append(asyncio.create_task(self._first_presence()))
        if self.settings.socket_mode:
            from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

            handler = AsyncSocketModeHandler(self.bolt, self.settings.slack_app_token)
            await handler.connect_async()
            self._socket_mode = handler

    async def _first_presence(self) -> None:
        try:
            await self.directory.refresh_usergroups()
            await self.presence.refresh(pace=False)
        except Exception:
            log.exception("first presence refresh failed")

    async def stop(self) -> None:
        handler = getattr(self, "_socket_mode", None)
        if handler is not None:
            await handler.close_async()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._bridge is not None:
            await self._bridge.stop()
        if self.worker_process is not None:
            await self.worker_process.stop()
        await self.slack.aclose()
        await self.engine.dispose()


def build(
    settings: Settings,
    *,
    clock: Clock = utcnow,
    db_schema: str | None = None,
    worker_process: bool = False,
) -> Runtime:
    """Build the app from settings; nothing connects until it is used or started. With a
    `worker_process`, visitor messages are written and the outbox delivered by `slackrouter
    work` (worker_process.py), which this process starts and hands each message to."""
    engine = create_engine(settings.database_url, schema=db_schema)
    sessions = session_factory(engine)
    connection = connect_slack(settings, engine)  # one bot token, or OAuth for many workspaces
    client, slack = connection.client, connection.gateway
    notifier = FeedNotifier()
    mailer = create_mailer(settings)
    delivery = delivery_worker(  # run here unless a worker process delivers
        settings,
        sessions,
        slack,
        mailer,
        clock=clock,
        busy=lambda: isinstance(visitor_messages, VisitorMessages) and visitor_messages.busy(),
    )
    worker = WorkerProcess(notifier) if worker_process else None
    wake = delivery.wake if worker is None else worker.wake
    directory = Directory(sessions, slack, clock=clock)
    contacts = Contacts(sessions, slack, clock=clock)
    router = Router(directory, contacts, max_age=settings.presence_max_age)
    visitor_messages = worker or VisitorMessages(
        sessions,
        notifier,
        router,
        clock=clock,
        email_debounce=settings.email_debounce_seconds,
        on_outbox=wake,
        gather_for=GATHER_FOR if engine.dialect.name == "postgresql" else 0.0,
        pacer=delivery.pacer,
    )
    replies = Replies(sessions, notifier, slack, clock=clock, on_outbox=wake)
    bolt = AsyncApp(
        signing_secret=settings.slack_signing_secret,
        client=client,
        process_before_response=True,
        raise_error_for_unhandled_request=False,
        # /slack/events checks the signature before anything else (api/app.py): not twice.
        request_verification_enabled=False,
        **connection.bolt_options,
    )
    installs.register(
        bolt, workspaces=Workspaces(sessions, slack, connection.installations), slack=slack
    )
    presence = PresenceService(
        sessions,
        slack,
        directory,
        clock=clock,
        calls_per_minute=settings.presence_calls_per_minute,
        max_age=settings.presence_max_age,
    )
    admins = Admins(slack, listed=settings.slackrouter_admins)
    overview = Overview(sessions, slack, clock=clock, max_age=settings.presence_max_age)
    home = HomeTabs(overview, slack, admins)
    chats = ChatActions(
        sessions,
        notifier,
        router,
        directory,
        presence,
        admins,
        replies,
        clock=clock,
        on_outbox=wake,
        on_change=home.changed,
    )
    surfaces = Surfaces(
        slack=slack,
        admins=admins,
        chatflows=ChatflowAdmin(sessions, clock=clock),
        directory=directory,
        presence=presence,
        overview=overview,
        home=home,
        chats=chats,
    )
    register_listeners(bolt, replies=replies, directory=directory, surfaces=surfaces)
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=sessions,
        client=client,
        slack=slack,
        notifier=notifier,
        visitor_messages=visitor_messages,
        replies=replies,
        reader=ConversationReader(
            engine, sessions, notifier, clock=clock, email_debounce=settings.email_debounce_seconds
        ),
        delivery=delivery,
        presence=presence,
        directory=directory,
        contacts=contacts,
        router=router,
        timers=TimerWorker(
            sessions,
            router,
            notifier,
            clock=clock,
            on_outbox=wake,
            email_debounce=settings.email_debounce_seconds,
        ),
        mailer=mailer,
        db_schema=db_schema,
        worker_process=worker,
        bolt=bolt,
        scheduler=AsyncIOScheduler(timezone="UTC"),
        home=home,
    )
