"""Contacts: known visitors (tracking cookie tokens, email, name) and the rep who owns each.

Which contact a piece of data belongs to, the same rule for the API and the CSV import:
1. the contact with the same email in the workspace (emails are compared lower-cased);
2. else the contact of one of the given visitor ids, unless that contact already has a different
   email: that is another person on the same browser, so a new contact is made and the visitor
   ids move to it;
3. else a new contact.
Every given visitor id ends up linked to that contact, moving from any other. A field given as
None leaves the stored value as it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TypeVar, cast

from slack_sdk.errors import SlackApiError
from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from slackrouter.adapters.db.models import Contact, ContactToken
from slackrouter.adapters.slack.gateway import SlackGateway, UserProfile, slack_error
from slackrouter.clock import Clock

MAX_EMAIL = 320
MAX_NAME = 200
MAX_VISITOR_ID = 200
MAX_VISITOR_IDS = 100
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,19}$")
# Bound parameters per IN (...) list, well under SQLite's and asyncpg's limits.
IN_CHUNK = 1000
# Bulk inserts go to the tables: twice as fast as through the ORM, which adds nothing here.
CONTACTS = cast(Table, Contact.__table__)
CONTACT_TOKENS = cast(Table, ContactToken.__table__)

T = TypeVar("T")


class InvalidContact(ValueError):
    """The contact's data is malformed; `problems` says what, one message each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class OwnerNotFound(ValueError):
    """The owner is no person in the workspace: unknown, a bot, or deactivated."""


@dataclass(frozen=True)
class ContactIn:
    email: str | None = None
    name: str | None = None
    owner: str | None = None  # a Slack user id (U…/W…) or the rep's email address
    visitor_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class ContactOut:
    id: int
    email: str | None
    name: str | None
    owner_user_id: str | None
    visitor_ids: tuple[str, ...]


@dataclass(frozen=True)
class ResolvedContact:
    """A validated contact whose owner is a Slack user id: what `ContactWriter` writes."""

    email: str | None
    name: str | None
    owner_user_id: str | None
    visitor_ids: tuple[str, ...]


def _blank_to_none(value: str | None) -> str | None:
    value = value.strip() if value is not None else None
    return value or None


def owner_reference(owner: str) -> str | None:
    """`owner` as a Slack user id or a lower-cased email address; None if it is neither."""
    owner = owner.strip()
    if SLACK_USER_ID.match(owner):
        return owner
    if len(owner) <= MAX_EMAIL and EMAIL.match(owner):
        return owner.lower()
    return None


def validate_contact(contact: ContactIn) -> ContactIn:
    """The contact with blanks as None, the email and an owner email lower-cased and visitor ids
    stripped and deduplicated; raises InvalidContact listing every problem."""
    email = _blank_to_none(contact.email)
    email = email.lower() if email else None
    name = _blank_to_none(contact.name)
    owner = _blank_to_none(contact.owner)
    visitor_ids = tuple(dict.fromkeys(v.strip() for v in contact.visitor_ids if v.strip()))
    problems: list[str] = []
    values = (email, name, owner, *visitor_ids)
    if any("\x00" in value for value in values if value):
        problems.append("NUL characters are not allowed")
    if email is None and not visitor_ids:
        problems.append("an email or a visitor id is needed")
    if email is not None:
        if len(email) > MAX_EMAIL:
            problems.append(f"email is longer than {MAX_EMAIL} characters")
        elif not EMAIL.match(email):
            problems.append(f'email "{email}" is not an email address')
    if name is not None and len(name) > MAX_NAME:
        problems.append(f"name is longer than {MAX_NAME} characters")
    if owner is not None:
        reference = owner_reference(owner)
        if reference is None:
            problems.append(f'owner "{owner[:40]}" is neither a Slack user id nor an email address')
        owner = reference
    if len(visitor_ids) > MAX_VISITOR_IDS:
        problems.append(f"more than {MAX_VISITOR_IDS} visitor ids")
    problems += [
        f'visitor id "{v[:40]}…" is longer than {MAX_VISITOR_ID} characters'
        for v in visitor_ids
        if len(v) > MAX_VISITOR_ID
    ]
    if problems:
        raise InvalidContact(problems)
    return replace(contact, email=email, name=name, owner=owner, visitor_ids=visitor_ids)


def _chunks(items: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class _Target:
    """A contact as the rows so far leave it; `id` is None until it is inserted."""

    id: int | None
    email: str | None
    name: str | None
    owner_user_id: str | None
    gained_token: bool = False
    written: dict[str, str | None] = field(init=False)  # the values in the database

    def __post_init__(self) -> None:
        self.written = self.values()

    def apply(self, row: ResolvedContact) -> None:
        for attribute in ("email", "name", "owner_user_id"):
            value = getattr(row, attribute)
            if value is not None:
                setattr(self, attribute, value)

    def values(self) -> dict[str, str | None]:
        return {"email": self.email, "name": self.name, "owner_user_id": self.owner_user_id}

    @property
    def changed(self) -> bool:
        return self.gained_token or self.values() != self.written


class ContactWriter:
    """Upserts contacts in order, as if one by one, with a few bulk statements per batch.

    `load` reads the contacts that all the rows to come may match; `store` then writes batch
    after batch, keeping track of its own changes instead of reading again. Reading up front also
    keeps PostgreSQL fast: a prepared query planned while the table was small would keep its
    sequential scan as the batches grow the table. The caller owns the transaction.
    """

    def __init__(self, session: AsyncSession, *, team_id: str, now: datetime) -> None:
        self._session = session
        self._team_id = team_id
        self._now = now
        self._loaded: dict[int, _Target] = {}
        self._by_email: dict[str, _Target] = {}
        self._linked: dict[str, _Target] = {}  # visitor id → its contact
        self._stored_tokens: set[str] = set()  # visitor ids with a row in the database
        self.created = 0
        self.updated: set[int] = set()  # existing contacts that changed
        self.tokens_linked = 0  # visitor ids newly linked to a contact or moved to another

    def _target(self, id_: int, email: str | None, name: str | None, owner: str | None) -> _Target:
        return self._loaded.setdefault(id_, _Target(id_, email, name, owner))

    async def load(self, rows: Sequence[ResolvedContact]) -> None:
        columns = (Contact.id, Contact.email, Contact.name, Contact.owner_user_id)
        emails = sorted({row.email for row in rows if row.email} - self._by_email.keys())
        for chunk in _chunks(emails):
            found = await self._session.execute(
                select(*columns).where(Contact.team_id == self._team_id, Contact.email.in_(chunk))
            )
            for id_, email, name, owner in found:
                self._by_email[email] = self._target(id_, email, name, owner)
        tokens = sorted({t for row in rows for t in row.visitor_ids} - self._linked.keys())
        for chunk in _chunks(tokens):
            found = await self._session.execute(
                select(ContactToken.token, *columns)
                .join(Contact, Contact.id == ContactToken.contact_id)
                .where(ContactToken.team_id == self._team_id, ContactToken.token.in_(chunk))
            )
            for token, id_, email, name, owner in found:
                self._linked[token] = self._target(id_, email, name, owner)
                self._stored_tokens.add(token)

    def _match(self, row: ResolvedContact) -> _Target | None:
        if row.email and row.email in self._by_email:
            return self._by_email[row.email]
        for token in row.visitor_ids:
            match = self._linked.get(token)
            if match is not None and (row.email is None or match.email is None):
                return match
        return None

    async def store(self, rows: Sequence[ResolvedContact]) -> list[int]:
        """Write `rows`, all of them given to `load` before; returns each row's contact id."""
        chosen: list[_Target] = []
        created: list[_Target] = []
        links: dict[str, _Target] = {}
        for row in rows:
            match = self._match(row)
            if match is None:
                match = _Target(None, None, None, None)
                created.append(match)
            match.apply(row)
            if match.email:
                self._by_email[match.email] = match
            for token in row.visitor_ids:
                if self._linked.get(token) is not match:
                    self._linked[token] = links[token] = match
                    match.gained_token = True
            chosen.append(match)
        touched = list({id(t): t for t in chosen}.values())
        changed = [t for t in touched if t.id is not None and t.changed]
        await self._insert(created)
        if changed:
            await self._session.execute(
                update(Contact),
                [{"id": t.id, **t.values(), "updated_at": self._now} for t in changed],
            )
        await self._link(links)
        for target in touched:
            target.written, target.gained_token = target.values(), False
        self.created += len(created)
        self.updated |= {cast(int, t.id) for t in changed}
        self.tokens_linked += len(links)
        return [cast(int, t.id) for t in chosen]

    async def _insert(self, created: list[_Target]) -> None:
        if not created:
            return
        # RETURNING rows come in no set order (SQLite cannot promise one without inserting row by
        # row), so ids go to contacts by content: new contacts with equal values are identical
        # rows until their tokens are linked, so which one gets which id does not matter.
        now = self._now
        waiting: dict[tuple[str | None, ...], list[_Target]] = {}
        for new in created:
            waiting.setdefault(tuple(new.values().values()), []).append(new)
        returned = await self._session.execute(
            insert(CONTACTS).returning(
                Contact.id, Contact.email, Contact.name, Contact.owner_user_id
            ),
            [
                {"team_id": self._team_id, **t.values(), "created_at": now, "updated_at": now}
                for t in created
            ],
        )
        for id_, *values in returned:
            waiting[tuple(values)].pop().id = id_

    async def _link(self, links: dict[str, _Target]) -> None:
        rows = [
            {"team_id": self._team_id, "token": token, "contact_id": t.id, "created_at": self._now}
            for token, t in links.items()
        ]
        moved = [row for row in rows if row["token"] in self._stored_tokens]
        added = [row for row in rows if row["token"] not in self._stored_tokens]
        if moved:
            await self._session.execute(update(ContactToken), moved)
        if added:
            await self._session.execute(insert(CONTACT_TOKENS), added)
            self._stored_tokens.update(row["token"] for row in added)


async def contact_out(session: AsyncSession, contact_id: int) -> ContactOut:
    contact = await session.get_one(Contact, contact_id)
    tokens = await session.scalars(
        select(ContactToken.token)
        .where(ContactToken.contact_id == contact_id)
        .order_by(ContactToken.created_at, ContactToken.token)
    )
    return ContactOut(
        id=contact.id,
        email=contact.email,
        name=contact.name,
        owner_user_id=contact.owner_user_id,
        visitor_ids=tuple(tokens),
    )


# The contacts of visitors about to be routed (`Contacts.find_for_visitors`), built once: they
# are read for every batch of new chats.
_BY_EMAIL = select(Contact).where(
    Contact.team_id == bindparam("team"), Contact.email.in_(bindparam("emails", expanding=True))
)
_BY_TOKEN = (
    select(ContactToken.token, Contact)
    .join(ContactToken, ContactToken.contact_id == Contact.id)
    .where(
        ContactToken.team_id == bindparam("team"),
        ContactToken.token.in_(bindparam("tokens", expanding=True)),
    )
)


class Contacts:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], slack: SlackGateway, *, clock: Clock
    ) -> None:
        self._sessions = sessions
        self._slack = slack
        self._clock = clock

    async def resolve_owner(self, owner: str, *, team_id: str) -> UserProfile:
        """The member of workspace `team_id` that `owner` (a user id or an email) names;
        OwnerNotFound if none, or if it is a bot or deactivated, since nobody could answer that
        contact's chats."""
        slack = await self._slack.for_team(team_id)
        if "@" in owner:
            profile = await slack.lookup_by_email(owner)
        else:
            try:
                profile = await slack.profile(owner)
            except SlackApiError as exc:
                if slack_error(exc) != "user_not_found":
                    raise
                profile = None
        if profile is None:
            raise OwnerNotFound(f'owner "{owner}" is not a member of the workspace')
        if profile.is_bot:
            raise OwnerNotFound(f'owner "{owner}" is a bot, not a person')
        if profile.deleted:
            raise OwnerNotFound(f'owner "{owner}" is deactivated')
        return profile

    async def upsert(self, *, team_id: str, contact: ContactIn) -> ContactOut:
        """Create or update the contact (see the module's rule); InvalidContact or OwnerNotFound
        store nothing."""
        contact = validate_contact(contact)
        owner = await self.resolve_owner(contact.owner, team_id=team_id) if contact.owner else None
        row = ResolvedContact(
            email=contact.email,
            name=contact.name,
            owner_user_id=owner.user_id if owner else None,
            visitor_ids=contact.visitor_ids,
        )
        try:
            return await self._store(team_id, row)
        except IntegrityError:
            # A concurrent upsert inserted the same email or visitor id first: now it matches.
            return await self._store(team_id, row)

    async def _store(self, team_id: str, row: ResolvedContact) -> ContactOut:
        async with self._sessions() as session, session.begin():
            writer = ContactWriter(session, team_id=team_id, now=self._clock())
            await writer.load([row])
            [contact_id] = await writer.store([row])
            return await contact_out(session, contact_id)

    async def find_for_visitors(
        self, session: AsyncSession, *, team_id: str, visitors: Sequence[tuple[str, str | None]]
    ) -> dict[str, Contact | None]:
        """`find_for_visitor` for many (visitor id, verified email) at once, in two statements:
        by email first, else by the tracking token, keyed by visitor id."""
        emails = {v: e.strip().lower() for v, e in visitors if e and e.strip()}
        by_email: dict[str, Contact] = {}
        if emails:
            rows = await session.scalars(
                _BY_EMAIL, {"team": team_id, "emails": sorted(set(emails.values()))}
            )
            by_email = {contact.email: contact for contact in rows if contact.email}
        found: dict[str, Contact | None] = {
            v: by_email.get(emails[v]) if v in emails else None for v, _ in visitors
        }
        tokens = sorted(v for v, contact in found.items() if contact is None)
        if tokens:
            rows = await session.execute(_BY_TOKEN, {"team": team_id, "tokens": tokens})
            found.update((token, contact) for token, contact in rows)
        return found

    async def find_for_visitor(
        self,
        session: AsyncSession,
        *,
        team_id: str,
        visitor_id: str,
        verified_email: str | None,
    ) -> Contact | None:
        """The visitor's contact: by the email a signed server call vouches for, else by the
        tracking cookie token. An email a browser merely claims must never be passed here, or
        anyone could borrow a customer's owner by typing their address."""
        found = await self.find_for_visitors(
            session, team_id=team_id, visitors=[(visitor_id, verified_email)]
        )
        return found[visitor_id]
