"""Contacts and their owners, against a real database and the fake Slack over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from slackrouter.adapters.db.database import create_engine, session_factory
from slackrouter.adapters.db.migrate import upgrade
from slackrouter.adapters.db.models import Contact, ContactToken
from slackrouter.adapters.slack.gateway import SlackGateway, create_client
from slackrouter.clock import utcnow
from slackrouter.sandbox.fake_slack import FakeSlack
from slackrouter.sandbox.server import serve
from slackrouter.services.contacts import (
    ContactIn,
    Contacts,
    InvalidContact,
    OwnerNotFound,
    validate_contact,
)
from tests.conftest import Database

TEAM, OTHER_TEAM = "T0001", "T0002"
ALICE, BOB, GONE = "U0ALICE", "U0BOB", "U0GONE"


@dataclass
class World:
    sessions: async_sessionmaker[AsyncSession]
    fake: FakeSlack
    slack: SlackGateway
    contacts: Contacts

    async def count(self) -> tuple[int, int]:
        """(contacts, linked tokens) stored."""
        async with self.sessions() as session:
            contacts = await session.scalar(select(func.count()).select_from(Contact))
            tokens = await session.scalar(select(func.count()).select_from(ContactToken))
        return contacts or 0, tokens or 0


@contextlib.asynccontextmanager
async def contacts_world(database: Database) -> AsyncIterator[World]:
    """A migrated database and a workspace with two reps, a deactivated user and the app's bot."""
    fake = FakeSlack(team_id=TEAM)
    fake.add_user(ALICE, "alice", real_name="Alice Rep", email="alice@acme.test")
    fake.add_user(BOB, "bob", real_name="Bob Rep", email="bob@acme.test")
    fake.add_user(GONE, "gone", email="gone@acme.test", deleted=True)
    engine = create_engine(database.url, schema=database.schema)
    try:
        await upgrade(engine)
        sessions = session_factory(engine)
        async with serve(fake.asgi) as url:
            slack = SlackGateway(create_client("xoxb-fake", url + "/api/"))
            yield World(sessions, fake, slack, Contacts(sessions, slack, clock=utcnow))
    finally:
        await engine.dispose()


@pytest.fixture
async def world(database: Database) -> AsyncIterator[World]:
    async with contacts_world(database) as world:
        yield world


async def test_upsert_matches_by_email_case_insensitively(world: World) -> None:
    first = await world.contacts.upsert(
        team_id=TEAM, contact=ContactIn(email="Ann@Example.com", name="Ann", visitor_ids=("t1",))
    )
    assert first.email == "ann@example.com"
    second = await world.contacts.upsert(
        team_id=TEAM,
        contact=ContactIn(email=" ANN@example.com ", name="Ann Lee", visitor_ids=("t2", "t2")),
    )
    assert second.id == first.id
    assert (second.name, second.visitor_ids) == ("Ann Lee", ("t1", "t2"))
    assert await world.count() == (1, 2)


async def test_upsert_matches_by_token_and_adds_the_email(world: World) -> None:
    anonymous = await world.contacts.upsert(
        team_id=TEAM, contact=ContactIn(visitor_ids=("t1", "t2"))
    )
    assert anonymous.email is None
    known = await world.contacts.upsert(
        team_id=TEAM, contact=ContactIn(email="ann@example.com", visitor_ids=("t3", "t2"))
    )
    assert known.id == anonymous.id
    assert (known.email, set(known.visitor_ids)) == ("ann@example.com", {"t1", "t2", "t3"})
    assert await world.count() == (1, 3)


async def test_fields_left_out_keep_their_values(world: World) -> None:
    first = await world.contacts.upsert(
        team_id=TEAM, contact=ContactIn(email="ann@example.com", name="Ann", owner=ALICE)
    )
    again = await world.contacts.upsert(team_id=TEAM, contact=ContactIn(email="ann@example.com"))
    assert (again.id, again.name, again.owner_user_id) == (first.id, "Ann", ALICE)


async def test_a_token_moves_to_the_contact_it_is_given_with(world: World) -> None:
    ann = await world.contacts.upsert(
        team_id=TEAM, contact=ContactIn(email="ann@example.com", visitor_ids=("shared", "a1"))
    )
    bob = await world.contacts.upsert(
        team_id=TEAM, contact=ContactIn(email="bob@example.com", visitor_ids=("shared",))
    )
    # Ann's token does not make Bob into Ann: he is another person on the same browser.
    assert bob.id != ann.id
    assert bob.visitor_ids == ("shared",)
    async with world.sessions() as session:
        found = await world.contacts.find_for_visitor(
            session, team_id=TEAM, visitor_id="shared", verified_email=None
        )
        assert found is not None and found.id == bob.id
        kept = await world.contacts.find_for_visitor(
            session, team_id=TEAM, visitor_id="a1", verified_email=None
        )
        assert kept is not None and kept.id == ann.id
    assert await world.count() == (2, 2)


async def test_owner_given_as_email_or_user_id(world: World) -> None:
    by_email = await world.contacts.upsert(
        team_id=TEAM, contact=ContactIn(email="ann@example.com", owner="Alice@ACME.test")
    )
    assert by_email.owner_user_id == ALICE
    by_id = await world.contacts.upsert(
        team_id=TEAM, contact=ContactIn(email="ann@example.com", owner=BOB)
    )
    assert (by_id.id, by_id.owner_user_id) == (by_email.id, BOB)
    assert [c.params["email"] for c in world.fake.calls_to("users.lookupByEmail")] == [
        "alice@acme.test"
    ]


async def test_an_owner_who_cannot_answer_stores_nothing(world: World) -> None:
    for owner, reason in [
        ("nobody@acme.test", "is not a member of the workspace"),
        ("U0NOBODY", "is not a member of the workspace"),
        ("UBOT", "is a bot"),
        ("gone@acme.test", "is deactivated"),
    ]:
        with pytest.raises(OwnerNotFound, match=reason):
            await world.contacts.upsert(
                team_id=TEAM,
                contact=ContactIn(email="ann@example.com", owner=owner, visitor_ids=("t",)),
            )
    assert await world.count() == (0, 0)


@pytest.mark.parametrize(
    ("contact", "problem"),
    [
        (ContactIn(name="Ann"), "an email or a visitor id is needed"),
        (ContactIn(email="ann.example.com"), "is not an email address"),
        (ContactIn(email="ann@example.com", owner="Alice"), "neither a Slack user id nor"),
        (ContactIn(visitor_ids=("x" * 201,)), "longer than 200"),
        (ContactIn(email="ann@example.com", name="A\x00"), "NUL"),
    ],
)
def test_malformed_contacts_are_refused(contact: ContactIn, problem: str) -> None:
    # `upsert` validates first, so a malformed contact never reaches Slack or the database.
    with pytest.raises(InvalidContact, match=problem):
        validate_contact(contact)


def test_validation_normalizes() -> None:
    contact = ContactIn(
        email=" Ann@Example.COM ", name="  ", owner="Alice@ACME.test", visitor_ids=(" a ", "a", "")
    )
    assert validate_contact(contact) == ContactIn(
        email="ann@example.com", name=None, owner="alice@acme.test", visitor_ids=("a",)
    )


async def test_a_browser_claimed_email_never_matches(world: World) -> None:
    await world.contacts.upsert(
        team_id=TEAM, contact=ContactIn(email="ceo@example.com", owner=ALICE, visitor_ids=("c1",))
    )
    async with world.sessions() as session:
        # A browser call passes no verified email, whatever the visitor typed.
        assert (
            await world.contacts.find_for_visitor(
                session, team_id=TEAM, visitor_id="someone-else", verified_email=None
            )
            is None
        )


async def test_a_signed_email_or_the_cookie_token_matches(world: World) -> None:
    ceo = await world.contacts.upsert(
        team_id=TEAM, contact=ContactIn(email="ceo@example.com", owner=ALICE, visitor_ids=("c1",))
    )
    other = await world.contacts.upsert(
        team_id=TEAM, contact=ContactIn(email="other@example.com", visitor_ids=("o1",))
    )
    async with world.sessions() as session:
        signed = await world.contacts.find_for_visitor(
            session, team_id=TEAM, visitor_id="new-browser", verified_email="CEO@example.com"
        )
        assert signed is not None and (signed.id, signed.owner_user_id) == (ceo.id, ALICE)
        # The vouched-for email wins over a cookie left by someone else on that browser.
        vouched = await world.contacts.find_for_visitor(
            session, team_id=TEAM, visitor_id="o1", verified_email="ceo@example.com"
        )
        assert vouched is not None and vouched.id == ceo.id
        by_token = await world.contacts.find_for_visitor(
            session, team_id=TEAM, visitor_id="o1", verified_email="unknown@example.com"
        )
        assert by_token is not None and by_token.id == other.id
        elsewhere = await world.contacts.find_for_visitor(
            session, team_id=OTHER_TEAM, visitor_id="c1", verified_email="ceo@example.com"
        )
        assert elsewhere is None


async def test_many_visitors_are_looked_up_at_once_as_one_by_one(world: World) -> None:
    ceo = await world.contacts.upsert(
        team_id=TEAM, contact=ContactIn(email="ceo@example.com", owner=ALICE, visitor_ids=("c1",))
    )
    other = await world.contacts.upsert(
        team_id=TEAM, contact=ContactIn(email="other@example.com", visitor_ids=("o1",))
    )
    visitors = [
        ("new-browser", "CEO@example.com"),  # by the vouched-for email
        ("o1", "ceo@example.com"),  # the email wins over the cookie
        ("c1", "unknown@example.com"),  # no such email: by the cookie
        ("o2", None),  # nobody
    ]
    async with world.sessions() as session:
        found = await world.contacts.find_for_visitors(session, team_id=TEAM, visitors=visitors)
        one_by_one = {
            visitor: await world.contacts.find_for_visitor(
                session, team_id=TEAM, visitor_id=visitor, verified_email=email
            )
            for visitor, email in visitors
        }
        elsewhere = await world.contacts.find_for_visitors(
            session, team_id=OTHER_TEAM, visitors=visitors
        )
    ids = {visitor: contact.id if contact else None for visitor, contact in found.items()}
    assert ids == {"new-browser": ceo.id, "o1": ceo.id, "c1": ceo.id, "o2": None}
    assert ids == {v: contact.id if contact else None for v, contact in one_by_one.items()}
    assert other.id not in ids.values()
    assert set(elsewhere.values()) == {None}


async def test_workspaces_keep_their_own_contacts(world: World) -> None:
    here = await world.contacts.upsert(
        team_id=TEAM, contact=ContactIn(email="ann@example.com", visitor_ids=("t1",))
    )
    there = await world.contacts.upsert(
        team_id=OTHER_TEAM, contact=ContactIn(email="ann@example.com", visitor_ids=("t1",))
    )
    assert here.id != there.id
    assert there.visitor_ids == ("t1",)
    assert await world.count() == (2, 2)


async def test_concurrent_upserts_of_one_person_make_one_contact(world: World) -> None:
    results = await asyncio.gather(
        *(
            world.contacts.upsert(
                team_id=TEAM,
                contact=ContactIn(email="ann@example.com", visitor_ids=(f"t{i}", "shared")),
            )
            for i in range(4)
        )
    )
    assert len({result.id for result in results}) == 1
    assert await world.count() == (1, 5)
