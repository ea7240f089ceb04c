"""The `slackrouter` command. The only place that reads `.env`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dotenv import load_dotenv

from slackrouter.config import Settings, SettingsError, load_settings, sqlite_path
from slackrouter.gc_tuning import collect_less_often

if TYPE_CHECKING:
    from slackrouter.bootstrap import Runtime

log = logging.getLogger("slackrouter")


def _configure_logging(level: str) -> None:
    from slackrouter import observability

    if logging.getLogger().handlers and observability.installed_handler() is None:
        return  # the host (a test runner) already handles logging
    observability.configure_logging(level)  # logfmt (key=value) lines on stderr


async def _workspace(runtime: Runtime, team: str | None) -> str:
    """The workspace a command acts on: the bot token's, or with OAuth the one `--team` names
    (or the only one installed)."""
    if team:
        return team
    if not runtime.slack.multi_workspace:
        return await runtime.slack.team_id()
    installed = await runtime.slack.team_ids()
    if len(installed) == 1:
        return installed[0]
    raise SettingsError(
        f"--team: with OAuth, name the workspace (installed: {', '.join(installed) or 'none'})"
    )


async def _serve(settings: Settings) -> None:
    import uvicorn

    from slackrouter.adapters.db.migrate import pending_revisions
    from slackrouter.api.app import create_api
    from slackrouter.api.server import AppServer
    from slackrouter.bootstrap import build

    separate = settings.worker_process == "separate"
    if (
        separate
        and settings.database_url.startswith("sqlite")
        and not sqlite_path(settings.database_url)
    ):
        raise SettingsError(
            "WORKER_PROCESS: an in-memory SQLite database is not shared between processes; "
            "set WORKER_PROCESS=inline or use a database file"
        )
    runtime = build(settings, worker_process=separate)
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
    await AppServer(config, runtime.notifier).serve()


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
            team_id = await _workspace(runtime, args.team)
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


async def _contacts_import(settings: Settings, path: str, team: str | None = None) -> int:
    from slack_sdk.errors import SlackApiError

    from slackrouter.adapters.slack.gateway import slack_error
    from slackrouter.bootstrap import build
    from slackrouter.clock import utcnow
    from slackrouter.services.contacts_import import ImportFailed, import_csv

    settings.require_slack()
    runtime = build(settings)
    try:
        await runtime.migrate()
        team_id = await _workspace(runtime, team)

        def progress(done: int, total: int) -> None:
            print(f"\r  {done:,} of {total:,} rows", end="", file=sys.stderr, flush=True)

        try:
            report = await import_csv(
                path,
                sessions=runtime.sessions,
                slack=runtime.slack,
                team_id=team_id,
                clock=utcnow,
                progress=progress,
            )
        except SlackApiError as exc:
            print(file=sys.stderr)
            print(
                f"slackrouter: nothing imported: Slack could not check the owners "
                f"({slack_error(exc)}); try again later",
                file=sys.stderr,
            )
            return 1
        except ImportFailed as failed:
            print(file=sys.stderr)
            print(f"slackrouter: nothing imported from {path}:", file=sys.stderr)
            for error in failed.errors:
                print(f"  {error}", file=sys.stderr)
            return 1
        print(file=sys.stderr)
        print(
            f"imported {path}: {report.created} contacts created, {report.updated} updated, "
            f"{report.tokens_linked} visitor ids linked"
        )
        return 0
    finally:
        await runtime.engine.dispose()


async def _export_routing(settings: Settings, team_id: str | None) -> tuple[str, str]:
    """(workspace, text) of the routing file; the only workspace in the database by default."""
    from slackrouter.adapters.db.database import create_engine, session_factory
    from slackrouter.adapters.db.migrate import upgrade
    from slackrouter.services.routing_file import export_routing, workspaces

    engine = create_engine(settings.database_url)
    try:
        await upgrade(engine)
        sessions = session_factory(engine)
        if team_id is None:
            found = await workspaces(sessions)
            if len(found) != 1:
                raise SettingsError(
                    "--workspace: the database has "
                    + (f"{len(found)} workspaces ({', '.join(found)})" if found else "none")
                    + "; name the one to export"
                )
            team_id = found[0]
        return team_id, await export_routing(sessions, team_id=team_id)
    finally:
        await engine.dispose()


async def _apply_routing(settings: Settings, text: str, path: str) -> int:
    from slackrouter.adapters.db.database import create_engine, session_factory
    from slackrouter.adapters.db.migrate import upgrade
    from slackrouter.clock import utcnow
    from slackrouter.services.routing_file import RoutingFileInvalid, apply_routing

    engine = create_engine(settings.database_url)
    try:
        await upgrade(engine)
        try:
            report = await apply_routing(session_factory(engine), text=text, clock=utcnow)
        except RoutingFileInvalid as invalid:
            print(f"slackrouter: nothing applied from {path}:", file=sys.stderr)
            for problem in invalid.problems:
                print(f"  {problem}", file=sys.stderr)
            return 1
    finally:
        await engine.dispose()
    for label, names in (
        ("created", report.created),
        ("updated", report.updated),
        ("unchanged", report.unchanged),
        ("not in the file, left as they are", report.not_in_file),
    ):
        if names:
            print(f"{label}: {', '.join(names)}")
    for name, secret in report.new_secrets.items():
        print(f"new signing secret of {name} (shown once): {secret}")
    return 0


def _routing_file(settings: Settings, args: argparse.Namespace) -> int:
    """`chatflows export FILE` and `chatflows apply FILE`: the routing as a reviewable file."""
    if args.action == "export":
        team_id, text = asyncio.run(_export_routing(settings, args.workspace))
        if args.file == "-":
            sys.stdout.write(text)
        else:
            Path(args.file).write_text(text, encoding="utf-8")
            print(f"exported the routing of {team_id} to {args.file}")
        return 0
    try:
        text = Path(args.file).read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"{args.file}: {exc.strerror or exc}") from None
    return asyncio.run(_apply_routing(settings, text, args.file))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slackrouter", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="serve the app with the Slack settings from .env")
    commands.add_parser(
        "work",
        help="write visitor messages and deliver the outbox (`run` starts this itself; see "
        "WORKER_PROCESS)",
    )
    demo = commands.add_parser("demo", help="run everything locally with a sandbox Slack")
    demo.add_argument("--port", type=int, default=8000, help="the app's port (default 8000)")
    commands.add_parser("migrate", help="apply database migrations")
    commands.add_parser(
        "check", help="check settings, database, email, Slack token and scopes; exit 1 on a problem"
    )
    chatflows = commands.add_parser("chatflows", help="add, list, export or apply chatflows")
    actions = chatflows.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="list chatflows")
    add = actions.add_parser("add", help="add a chatflow routed to some Slack users")
    add.add_argument("--name", required=True)
    add.add_argument("--route", required=True, help="Slack user ids, comma-separated")
    add.add_argument("--away-message")
    add.add_argument("--welcome-message")
    add.add_argument("--team", help="the workspace id (T…); needed with OAuth and many workspaces")
    export = actions.add_parser(
        "export", help="write the workspace's teams and chatflows to a YAML file (- for stdout)"
    )
    export.add_argument("file")
    export.add_argument("--workspace", help="the Slack workspace id (T…); needed if several")
    apply = actions.add_parser(
        "apply", help="make the routing what a YAML file says; checked first, all or nothing"
    )
    apply.add_argument("file")
    contacts = commands.add_parser("contacts", help="manage known visitors and their owners")
    contact_actions = contacts.add_subparsers(dest="action", required=True)
    importer = contact_actions.add_parser(
        "import",
        help="import contacts from a CSV file (email,name,owner,visitor_ids); all or nothing",
    )
    importer.add_argument("file")
    importer.add_argument("--team", help="the workspace id (T…); needed with OAuth")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    load_dotenv(override=False)
    if args.command == "check":
        from slackrouter.check import main as check

        return check()
    try:
        settings = load_settings()
        _configure_logging(settings.log_level)
        if args.command == "run":
            settings.require_slack()
            collect_less_often()
            asyncio.run(_serve(settings))
        elif args.command == "work":
            from slackrouter.worker_process import serve_worker

            settings.require_slack()
            collect_less_often()
            asyncio.run(serve_worker(settings))
        elif args.command == "demo":
            from slackrouter.sandbox.demo import run_demo

            asyncio.run(run_demo(settings, port=args.port))
        elif args.command == "migrate":
            asyncio.run(_migrate(settings))
        elif args.command == "chatflows" and args.action in ("export", "apply"):
            return _routing_file(settings, args)
        elif args.command == "chatflows":
            asyncio.run(_chatflows(settings, args))
        elif args.command == "contacts":
            return asyncio.run(_contacts_import(settings, args.file, args.team))
    except SettingsError as exc:
        print(f"slackrouter: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
