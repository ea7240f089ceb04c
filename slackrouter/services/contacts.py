"""Contacts: known visitors (tracking cookie tokens, email, name) and the rep who owns each.

Which contact a piece of data belongs to, the same rule for the API and the CSV import:
1. the contact with the same email in the workspace (emails are compared lower-cased);
2. else the contact of one of the given visitor ids, unless that contact already has a different
   email: then it is another person on the same browser, and a new contact is made (so HubSpot does
   it), which the visitor ids move to;
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
from sqlalchemy import insert, select, update
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
    """A validated contact whose owner is a Slack user id: what `store_contacts` writes."""

    email: str | None
    name: str | None
    owner_user_id: str | None
    visitor_ids: tuple[str, ...]


@dataclass(frozen=True)
class Stored:
    contact_ids: list[int]  # one per row given, in order
    created: int
    updated: set[int]  # existing contacts that changed
    tokens_linked: int


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
    """A contact as the rows of one `store_contacts` call leave it; `id` is None until inserted."""

    id: int | None
    email: str | None
    name: str | None
    owner_user_id: str | None
    gained_token: bool = False
    stored: dict[str, str | None] = field(init=False)

    def __post_init__(self) -> None:
        self.stored = self.values()

    def apply(self, row: ResolvedContact) -> None:
        for attribute in ("email", "name", "owner_user_id"):
            value = getattr(row, attribute)
            if value is not None:
                setattr(self, attribute, value)

    def values(self) -> dict[str, str | None]:
        return {"email": self.email, "name": self.name, "owner_user_id": self.owner_user_id}

    @property
    def changed(self) -> bool:
        return self.gained_token or self.values() != self.stored


async def store_contacts(
    session: AsyncSession, *, team_id: str, rows: Sequence[ResolvedContact], now: datetime
) -> Stored:
    """Upsert `rows` in order, as if one by one, with a few bulk statements in all.

    The caller owns the transaction. Rows may share contacts; a visitor id given twice ends up
    with the later row's contact.
    """
    targets: dict[int, _Target] = {}

    def target(id_: int, email: str | None, name: str | None, owner: str | None) -> _Target:
        return targets.setdefault(id_, _Target(id_, email, name, owner))

    columns = (Contact.id, Contact.email, Contact.name, Contact.owner_user_id)
    emails = sorted({row.email for row in rows if row.email})
    by_email: dict[str, _Target] = {}
    for chunk in _chunks(emails):
        found = await session.execute(
            select(*columns).where(Contact.team_id == team_id, Contact.email.in_(chunk))
        )
        for id_, email, name, owner in found:
            by_email[email] = target(id_, email, name, owner)
    tokens = sorted({token for row in rows for token in row.visitor_ids})
    linked: dict[str, _Target] = {}
    for chunk in _chunks(tokens):
        found = await session.execute(
            select(ContactToken.token, *columns)
            .join(Contact, Contact.id == ContactToken.contact_id)
            .where(ContactToken.team_id == team_id, ContactToken.token.in_(chunk))
        )
        for token, id_, email, name, owner in found:
            linked[token] = target(id_, email, name, owner)
    existing_tokens = set(linked)

    chosen: list[_Target] = []
    created: list[_Target] = []
    links: dict[str, _Target] = {}
    for row in rows:
        match = by_email.get(row.email) if row.email else None
        if match is None:
            match = next(
                (
                    linked[token]
                    for token in row.visitor_ids
                    if token in linked and (row.email is None or linked[token].email is None)
                ),
                None,
            )
        if match is None:
            match = _Target(None, None, None, None)
            created.append(match)
        match.apply(row)
        if match.email:
            by_email[match.email] = match
        for token in row.visitor_ids:
            if linked.get(token) is not match:
                linked[token] = links[token] = match
                match.gained_token = True
        chosen.append(match)

    if created:
        # RETURNING rows come in no set order (SQLite cannot promise one without inserting row by
        # row), so ids go to contacts by content: new contacts with equal values are identical
        # rows until their tokens are linked, so which one gets which id does not matter.
        waiting: dict[tuple[str | None, ...], list[_Target]] = {}
        for new in created:
            waiting.setdefault(tuple(new.values().values()), []).append(new)
        returned = await session.execute(
            # render_nulls: the same columns in every row, or the ORM splits the batch.
            insert(Contact)
            .returning(Contact.id, Contact.email, Contact.name, Contact.owner_user_id)
            .execution_options(render_nulls=True),
            [
                {"team_id": team_id, **t.values(), "created_at": now, "updated_at": now}
                for t in created
            ],
        )
        for id_, *values in returned:
            waiting[tuple(values)].pop().id = id_
    changed = [t for t in targets.values() if t.changed]
    if changed:
        await session.execute(
            update(Contact), [{"id": t.id, **t.values(), "updated_at": now} for t in changed]
        )
    moved = [
        {"team_id": team_id, "token": token, "contact_id": t.id, "created_at": now}
        for token, t in links.items()
    ]
    if any(link["token"] in existing_tokens for link in moved):
        await session.execute(
            update(ContactToken), [link for link in moved if link["token"] in existing_tokens]
        )
    if any(link["token"] not in existing_tokens for link in moved):
        await session.execute(
            insert(ContactToken), [link for link in moved if link["token"] not in existing_tokens]
        )
    return Stored(
        contact_ids=[cast(int, t.id) for t in chosen],
        created=len(created),
        updated={cast(int, t.id) for t in changed},
        tokens_linked=len(links),
    )


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


class Contacts:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], slack: SlackGateway, *, clock: Clock
    ) -> None:
        self._sessions = sessions
        self._slack = slack
        self._clock = clock

    async def resolve_owner(self, owner: str) -> UserProfile:
        """The workspace member `owner` (a user id or an email) names; OwnerNotFound if none,
        or if it is a bot or deactivated, since nobody could answer that contact's chats."""
        if "@" in owner:
            profile = await self._slack.lookup_by_email(owner)
        else:
            try:
                profile = await self._slack.profile(owner)
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
        owner = await self.resolve_owner(contact.owner) if contact.owner else None
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
            stored = await store_contacts(session, team_id=team_id, rows=[row], now=self._clock())
            return await contact_out(session, stored.contact_ids[0])

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
        if verified_email and verified_email.strip():
            contact = await session.scalar(
                select(Contact).where(
                    Contact.team_id == team_id, Contact.email == verified_email.strip().lower()
                )
            )
            if contact is not None:
                return contact
        return await session.scalar(
            select(Contact)
            .join(ContactToken, ContactToken.contact_id == Contact.id)
            .where(ContactToken.team_id == team_id, ContactToken.token == visitor_id)
        )
