"""The `slackrouter` command. The only place that reads `.env`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from dotenv import load_dotenv

from slackrouter.config import Settings, SettingsError, load_settings

log = logging.getLogger("slackrouter")


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


async def _serve(settings: Settings) -> None:
    import uvicorn

    from slackrouter.adapters.db.migrate import pending_revisions
    from slackrouter.api.app import create_api
    from slackrouter.bootstrap import build

    runtime = build(settings)
    if settings.database_url.startswith("sqlite"):
        await runtime.migrate()
    elif pending := await pending_revisions(runtime.engine):
        raise SettingsError(
            f"DATABASE_URL: the database lacks migrations {', '.join(pending)}; "
            "run `slackrouter migrate` once before starting the replicas"
        )
    mode = (
        "Socket Mode"
        if settings.socket_mode
        else f"HTTP mode at {settings.public_url}/slack/events"
    )
    log.info(
        "slackrouter listening on http://%s:%s (Slack: %s)", settings.host, settings.port, mode
    )
    config = uvicorn.Config(
        create_api(runtime), host=settings.host, port=settings.port, log_level="warning"
    )
    await uvicorn.Server(config).serve()


async def _migrate(settings: Settings) -> None:
    from slackrouter.adapters.db.database import create_engine
    from slackrouter.adapters.db.migrate import upgrade

    engine = create_engine(settings.database_url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    print("database is up to date")


async def _chatflows(settings: Settings, args: argparse.Namespace) -> None:
    from slackrouter.bootstrap import build
    from slackrouter.clock import utcnow
    from slackrouter.services.chatflows import ChatflowSpec, create_chatflow, list_chatflows

    runtime = build(settings)
    try:
        await runtime.migrate()
        if args.action == "add":
            settings.require_slack()
            team_id = await runtime.slack.team_id()
            spec = ChatflowSpec(
                name=args.name,
                route_users=tuple(u.strip() for u in args.route.split(",") if u.strip()),
                away_message=args.away_message,
                welcome_message=args.welcome_message,
            )
            try:
                chatflow = await create_chatflow(
                    runtime.sessions, team_id=team_id, spec=spec, clock=utcnow
                )
            except ValueError as exc:
                raise SettingsError(f"chatflow {exc}") from None
            print(f"created chatflow {chatflow.id} ({chatflow.name})")
            print(f"  public key:     {chatflow.public_key}")
            print(f"  signing secret: {chatflow.signing_secret}")
        else:
            for chatflow in await list_chatflows(runtime.sessions):
                route = ", ".join(chatflow.route_users) or "nobody"
                print(f"{chatflow.id}  {chatflow.name}  key={chatflow.public_key}  route: {route}")
    finally:
        await runtime.engine.dispose()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slackrouter", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="serve the app with the Slack settings from .env")
    demo = commands.add_parser("demo", help="run everything locally with a sandbox Slack")
    demo.add_argument("--port", type=int, default=8000, help="the app's port (default 8000)")
    commands.add_parser("migrate", help="apply database migrations")
    chatflows = commands.add_parser("chatflows", help="add or list chatflows")
    actions = chatflows.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="list chatflows")
    add = actions.add_parser("add", help="add a chatflow routed to some Slack users")
    add.add_argument("--name", required=True)
    add.add_argument("--route", required=True, help="Slack user ids, comma-separated")
    add.add_argument("--away-message")
    add.add_argument("--welcome-message")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    load_dotenv(override=False)
    try:
        settings = load_settings()
        _configure_logging(settings.log_level)
        if args.command == "run":
            settings.require_slack()
            asyncio.run(_serve(settings))
        elif args.command == "demo":
            from slackrouter.sandbox.demo import run_demo

            asyncio.run(run_demo(settings, port=args.port))
        elif args.command == "migrate":
            asyncio.run(_migrate(settings))
        elif args.command == "chatflows":
            asyncio.run(_chatflows(settings, args))
    except SettingsError as exc:
        print(f"slackrouter: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
