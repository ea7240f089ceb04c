"""The one place that builds the app: engine, Slack client, services, Bolt app, scheduler."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from slackrouter.adapters.db.database import create_engine, session_factory
from slackrouter.adapters.db.migrate import upgrade
from slackrouter.adapters.mail import Mailer, MboxMailer, SmtpMailer
from slackrouter.adapters.slack.gateway import SlackGateway, create_client
from slackrouter.clock import Clock, utcnow
from slackrouter.config import Settings
from slackrouter.handlers import register_listeners
from slackrouter.services.contacts import Contacts
from slackrouter.services.conversations import ConversationReader
from slackrouter.services.delivery import DeliveryWorker
from slackrouter.services.directory import Directory
from slackrouter.services.notifier import FeedNotifier
from slackrouter.services.presence import PresenceService
from slackrouter.services.replies import Replies
from slackrouter.services.router import Router
from slackrouter.services.timers import TimerWorker
from slackrouter.services.visitor_messages import VisitorMessages

log = logging.getLogger(__name__)

USERGROUP_REFRESH_MINUTES = 15


@dataclass
class Runtime:
    """Everything the running app is made of; `start()`/`stop()` run the background work."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    client: AsyncWebClient
    slack: SlackGateway
    notifier: FeedNotifier
    visitor_messages: VisitorMessages
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
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def migrate(self) -> None:
        await upgrade(self.engine)

    async def start(self) -> None:
        """Start delivery, the presence poller and (with an app token) the Socket Mode link."""
        self._tasks.append(
            asyncio.create_task(self.delivery.run_forever(self.settings.delivery_poll_interval))
        )
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
        await self.engine.dispose()


def create_mailer(settings: Settings) -> Mailer:
    """SMTP when a host is set; otherwise an mbox file under ./var/."""
    if settings.smtp_host:
        return SmtpMailer(
            settings.smtp_host,
            settings.smtp_port,
            security=settings.smtp_security,  # type: ignore[arg-type]
            username=settings.smtp_username,
            password=settings.smtp_password,
        )
    return MboxMailer(Path(settings.mbox_path))


def build(settings: Settings, *, clock: Clock = utcnow, db_schema: str | None = None) -> Runtime:
    """Build the app from settings; nothing connects until it is used or started."""
    engine = create_engine(settings.database_url, schema=db_schema)
    sessions = session_factory(engine)
    client = create_client(settings.slack_bot_token, settings.slack_api_url)
    slack = SlackGateway(client)
    notifier = FeedNotifier()
    mailer = create_mailer(settings)
    delivery = DeliveryWorker(
        sessions,
        slack,
        mailer,
        clock=clock,
        max_attempts=settings.delivery_max_attempts,
        mail_from=settings.mail_from,
    )
    directory = Directory(sessions, slack, clock=clock)
    contacts = Contacts(sessions, slack, clock=clock)
    router = Router(directory, contacts, max_age=settings.presence_max_age)
    replies = Replies(sessions, notifier, slack, clock=clock)
    bolt = AsyncApp(
        signing_secret=settings.slack_signing_secret,
        client=client,
        process_before_response=True,
        raise_error_for_unhandled_request=False,
    )
    register_listeners(bolt, replies=replies, directory=directory)
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=sessions,
        client=client,
        slack=slack,
        notifier=notifier,
        visitor_messages=VisitorMessages(
            sessions,
            notifier,
            router,
            clock=clock,
            email_debounce=settings.email_debounce_seconds,
            on_outbox=delivery.wake,
        ),
        replies=replies,
        reader=ConversationReader(sessions, notifier),
        delivery=delivery,
        presence=PresenceService(
            sessions,
            slack,
            directory,
            clock=clock,
            calls_per_minute=settings.presence_calls_per_minute,
            max_age=settings.presence_max_age,
        ),
        directory=directory,
        contacts=contacts,
        router=router,
        timers=TimerWorker(sessions, router, notifier, clock=clock, on_outbox=delivery.wake),
        mailer=mailer,
        bolt=bolt,
        scheduler=AsyncIOScheduler(timezone="UTC"),
    )
