"""`slackrouter contacts import FILE.csv`: load contacts and their owners from a CRM export.

The whole file is checked before anything is stored, so a file with mistakes can be fixed and
imported again from scratch: every bad row is reported by its line number, and a file that
imports does so in one transaction. Each row is upserted as `Contacts.upsert` would, in file order.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from slackrouter.adapters.slack.gateway import SlackGateway
from slackrouter.clock import Clock
from slackrouter.services.contacts import (
    ContactIn,
    Contacts,
    ContactWriter,
    InvalidContact,
    OwnerNotFound,
    ResolvedContact,
    owner_reference,
    validate_contact,
)

COLUMNS = ("email", "name", "owner", "visitor_ids")
BATCH = 500
SHOWN_ERRORS = 20
VISITOR_ID_SEPARATORS = re.compile(r"[;\s]+")


class ImportFailed(Exception):
    """The file was not imported; `errors` lists every problem, most as `line N: …`."""

    def __init__(self, errors: list[str]) -> None:
        shown = errors[:SHOWN_ERRORS]
        if len(errors) > len(shown):
            shown = [*shown, f"… and {len(errors) - len(shown)} more"]
        super().__init__("\n".join(shown))
        self.errors = errors


@dataclass(frozen=True)
class ImportReport:
    created: int
    updated: int  # existing contacts that changed
    tokens_linked: int  # visitor ids newly linked to a contact or moved to another


def _header(record: list[str], line: int) -> list[str]:
    names = [name.strip().lower() for name in record]
    if not set(names) & set(COLUMNS):
        raise ImportFailed(
            [f"line {line}: the first line must be a header naming the columns {','.join(COLUMNS)}"]
        )
    problems = [
        f'line {line}: unknown column "{name[:40]}" (the columns are {", ".join(COLUMNS)})'
        for name in names
        if name not in COLUMNS
    ]
    problems += [
        f'line {line}: column "{name}" appears twice' for name in COLUMNS if names.count(name) > 1
    ]
    if not problems and not {"email", "visitor_ids"} & set(names):
        problems.append(f"line {line}: an email or a visitor_ids column is needed")
    if problems:
        raise ImportFailed(problems)
    return names


def _parse(raw: bytes) -> tuple[list[ContactIn], list[tuple[int, str]], dict[int, str]]:
    """The valid rows' contacts, the problems found so far as (line, message), and each line's
    owner reference (to check it against the workspace even on a row with other problems)."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ImportFailed(
            [f"line {line}: the file is not UTF-8 text; save it as CSV in UTF-8"]
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    rows: list[ContactIn] = []
    errors: list[tuple[int, str]] = []
    owners: dict[int, str] = {}
    emails: dict[str, int] = {}
    visitor_ids: dict[str, int] = {}
    try:
        while True:
            line = reader.line_num + 1  # where the record starts; a quoted field may span lines
            record = next(reader, None)
            if record is None:
                break
            if not any(field.strip() for field in record):
                continue
            if header is None:
                header = _header(record, line)
                continue
            if len(record) != len(header):
                errors.append(
                    (line, f"{len(record)} fields, but the header has {len(header)} columns")
                )
                continue
            values = dict(zip(header, record, strict=True))
            owner = owner_reference(values.get("owner", ""))
            if owner is not None:
                owners[line] = owner
            try:
                contact = validate_contact(
                    ContactIn(
                        email=values.get("email"),
                        name=values.get("name"),
                        owner=values.get("owner"),
                        visitor_ids=tuple(
                            VISITOR_ID_SEPARATORS.split(values.get("visitor_ids", ""))
                        ),
                    )
                )
            except InvalidContact as exc:
                errors += [(line, problem) for problem in exc.problems]
                continue
            rows.append(contact)
            if contact.email:
                first = emails.setdefault(contact.email, line)
                if first != line:
                    errors.append((line, f'email "{contact.email}" is also on line {first}'))
            for visitor_id in contact.visitor_ids:
                first = visitor_ids.setdefault(visitor_id, line)
                if first != line:
                    errors.append((line, f'visitor id "{visitor_id}" is also on line {first}'))
    except csv.Error as exc:
        errors.append((reader.line_num, f"not valid CSV: {exc}"))
    if header is None and not errors:
        raise ImportFailed([f"the file is empty; its first line must be: {','.join(COLUMNS)}"])
    return rows, errors, owners


async def import_csv(
    path: str | Path,
    *,
    sessions: async_sessionmaker[AsyncSession],
    slack: SlackGateway,
    team_id: str,
    clock: Clock,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Import the file, or raise ImportFailed and store nothing.

    Columns (a header row, in any order and case): email, name, owner (a Slack user id or email),
    visitor_ids (separated by `;` or spaces); each row needs an email or a visitor id. The
    contacts are written BATCH rows at a time, in one transaction.
    `progress(done, total)` is called every BATCH rows and at the end.
    """
    raw = await asyncio.to_thread(Path(path).read_bytes)
    rows, errors, owners = _parse(raw)
    lines_by_owner: dict[str, list[int]] = {}
    for line, owner in owners.items():
        lines_by_owner.setdefault(owner, []).append(line)
    contacts = Contacts(sessions, slack, clock=clock)
    user_ids: dict[str, str] = {}
    for owner, lines in lines_by_owner.items():  # each distinct owner is looked up once
        try:
            user_ids[owner] = (await contacts.resolve_owner(owner, team_id=team_id)).user_id
        except OwnerNotFound as exc:
            errors += [(line, str(exc)) for line in lines]
    if errors:
        errors.sort(key=lambda error: error[0])
        raise ImportFailed([f"line {line}: {message}" for line, message in errors])

    resolved = [
        ResolvedContact(
            email=contact.email,
            name=contact.name,
            owner_user_id=user_ids[contact.owner] if contact.owner else None,
            visitor_ids=contact.visitor_ids,
        )
        for contact in rows
    ]
    total = len(resolved)
    async with sessions() as session, session.begin():
        writer = ContactWriter(session, team_id=team_id, now=clock())
        await writer.load(resolved)
        for start in range(0, total, BATCH):
            await writer.store(resolved[start : start + BATCH])
            if progress is not None:
                progress(min(start + BATCH, total), total)
    if progress is not None and total == 0:
        progress(0, 0)
    return ImportReport(
        created=writer.created, updated=len(writer.updated), tokens_linked=writer.tokens_linked
    )
