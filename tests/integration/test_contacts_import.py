"""`slackrouter contacts import FILE.csv`: every bad row reported, all or nothing, fast."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from slackrouter.adapters.db.models import Contact, ContactToken
from slackrouter.clock import utcnow
from slackrouter.services.contacts import ContactIn
from slackrouter.services.contacts_import import ImportFailed, ImportReport, import_csv
from tests.conftest import Database
from tests.integration.test_contacts import ALICE, BOB, TEAM, World, contacts_world


@pytest.fixture
async def world(database: Database) -> AsyncIterator[World]:
    async with contacts_world(database) as world:
        yield world


async def run_import(
    world: World,
    tmp_path: Path,
    content: str | bytes,
    progress: list[tuple[int, int]] | None = None,
) -> ImportReport:
    path = tmp_path / "contacts.csv"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return await import_csv(
        path,
        sessions=world.sessions,
        slack=world.slack,
        team_id=TEAM,
        clock=utcnow,
        progress=None if progress is None else lambda done, total: progress.append((done, total)),
    )


async def failures(world: World, tmp_path: Path, content: str | bytes) -> list[str]:
    with pytest.raises(ImportFailed) as failed:
        await run_import(world, tmp_path, content)
    return failed.value.errors


async def stored(world: World) -> dict[str | None, tuple[str | None, str | None, set[str]]]:
    """email → (name, owner, visitor ids) of every contact."""
    async with world.sessions() as session:
        contacts = await session.execute(
            select(Contact.id, Contact.email, Contact.name, Contact.owner_user_id)
        )
        tokens: dict[int, set[str]] = {}
        for contact_id, token in await session.execute(
            select(ContactToken.contact_id, ContactToken.token)
        ):
            tokens.setdefault(contact_id, set()).add(token)
    return {email: (name, owner, tokens.get(id_, set())) for id_, email, name, owner in contacts}


async def test_a_good_file_imports_every_row(world: World, tmp_path: Path) -> None:
    report = await run_import(
        world,
        tmp_path,
        "Email,NAME, Visitor_IDs ,owner\r\n"
        "Ann@Example.com,Ann Lee,a1;a2 a3,alice@acme.test\r\n"
        'bob@example.com,"Bob, Jr.",,U0BOB\r\n'
        "\r\n"
        ",,anon1,\r\n"
        "carol@example.com,,,\r\n",
    )
    assert report == ImportReport(created=4, updated=0, tokens_linked=4)
    assert await stored(world) == {
        "ann@example.com": ("Ann Lee", ALICE, {"a1", "a2", "a3"}),
        "bob@example.com": ("Bob, Jr.", BOB, set()),
        None: (None, None, {"anon1"}),
        "carol@example.com": (None, None, set()),
    }


async def test_a_utf8_file_with_a_byte_order_mark_and_partial_columns(
    world: World, tmp_path: Path
) -> None:
    report = await run_import(world, tmp_path, "\ufeffemail,name\nzoë@example.com,Zoë\n")
    assert report.created == 1
    assert await stored(world) == {"zoë@example.com": ("Zoë", None, set())}


async def test_bad_rows_are_reported_by_line_and_nothing_is_stored(
    world: World, tmp_path: Path
) -> None:
    await world.contacts.upsert(
        team_id=TEAM, contact=ContactIn(email="ann@example.com", name="Ann", visitor_ids=("a0",))
    )
    before = await stored(world)
    errors = await failures(
        world,
        tmp_path,
        "email,name,owner,visitor_ids\n"  # 1
        "ann@example.com,Ann Lee,alice@acme.test,a1\n"  # 2
        "not-an-email,X,,\n"  # 3
        'bob@example.com,"Bob\n'  # 4: a quoted name over two lines
        'Smith",U0BOB,b1\n'  # 5
        "carol@example.com,Carol,nobody@acme.test,c1\n"  # 6
        ",,,\n"  # 7: empty, skipped
        "dave@example.com,Dave,U0BOB,d1 a0\n"  # 8
        ",No id,,\n",  # 9
    )
    assert errors == [
        'line 3: email "not-an-email" is not an email address',
        'line 6: owner "nobody@acme.test" is not a member of the workspace',
        "line 9: an email or a visitor id is needed",
    ]
    assert await stored(world) == before


async def test_duplicates_within_the_file(world: World, tmp_path: Path) -> None:
    errors = await failures(
        world,
        tmp_path,
        "email,visitor_ids\n"
        "ann@example.com,a1\n"
        "bob@example.com,b1\n"
        "ANN@example.com,a2\n"
        "carol@example.com,b1\n",
    )
    assert errors == [
        'line 4: email "ann@example.com" is also on line 2',
        'line 5: visitor id "b1" is also on line 3',
    ]
    assert await stored(world) == {}


async def test_every_problem_of_a_row_and_each_owner_looked_up_once(
    world: World, tmp_path: Path
) -> None:
    errors = await failures(
        world,
        tmp_path,
        "email,name,owner\n"
        "ann@example.com,Ann,alice@acme.test\n"
        "bob@example.com,Bob,ALICE@acme.test\n"
        f"bad,{'x' * 201},nobody@acme.test\n"
        "carol@example.com,Carol,nobody@acme.test\n"
        "dave@example.com,Dave,UBOT\n"
        "erin@example.com,Erin,not an owner\n"
        "frank@example.com,Fr\x00nk,gone@acme.test\n"
        "gina@example.com,Gina,U0ALICE,extra\n",
    )
    assert errors == [
        'line 4: email "bad" is not an email address',
        "line 4: name is longer than 200 characters",
        'line 4: owner "nobody@acme.test" is not a member of the workspace',
        'line 5: owner "nobody@acme.test" is not a member of the workspace',
        'line 6: owner "UBOT" is a bot, not a person',
        'line 7: owner "not an owner" is neither a Slack user id nor an email address',
        "line 8: NUL characters are not allowed",
        'line 8: owner "gone@acme.test" is deactivated',
        "line 9: 4 fields, but the header has 3 columns",
    ]
    looked_up = [call.params["email"] for call in world.fake.calls_to("users.lookupByEmail")]
    assert sorted(looked_up) == ["alice@acme.test", "gone@acme.test", "nobody@acme.test"]
    assert await stored(world) == {}


FILE_ERRORS = [
    (b"", "the file is empty; its first line must be: email,name,owner,visitor_ids"),
    (b"\n \n", "the file is empty; its first line must be: email,name,owner,visitor_ids"),
    (
        b"\n\nemail,phone\n",
        'line 3: unknown column "phone" (the columns are email, name, owner, visitor_ids)',
    ),
    (b"email,name,Email\n", 'line 1: column "email" appears twice'),
    (b"name,owner\nAnn,U0BOB\n", "line 1: an email or a visitor_ids column is needed"),
    (
        b"ann@example.com,Ann\n",
        "line 1: the first line must be a header naming the columns email,name,owner,visitor_ids",
    ),
    (
        b"email,name\nann@example.com,Ann\nbob@example.com,J\xf6rg\n",
        "line 3: the file is not UTF-8 text; save it as CSV in UTF-8",
    ),
    (
        b'email,name\nann@example.com,"' + b"x" * 200_000 + b'"\n',
        "line 2: not valid CSV: field larger than field limit (131072)",
    ),
]


async def test_file_and_header_errors(world: World, tmp_path: Path) -> None:
    for content, error in FILE_ERRORS:
        assert await failures(world, tmp_path, content) == [error], content[:40]
    assert await stored(world) == {}


async def test_existing_contacts_are_updated_and_tokens_move(world: World, tmp_path: Path) -> None:
    await world.contacts.upsert(
        team_id=TEAM, contact=ContactIn(email="ann@example.com", name="Ann", visitor_ids=("a1",))
    )
    await world.contacts.upsert(
        team_id=TEAM, contact=ContactIn(email="bob@example.com", visitor_ids=("b1",))
    )
    content = (
        "email,name,owner,visitor_ids\n"
        "ann@example.com,Ann Lee,U0ALICE,a2\n"
        "carol@example.com,Carol,,b1\n"  # Bob's browser, but Carol: b1 moves to her
        ",,U0BOB,a1\n"  # Ann's token: Ann gets an owner, and keeps her name
    )
    report = await run_import(world, tmp_path, content)
    assert report == ImportReport(created=1, updated=1, tokens_linked=2)
    assert await stored(world) == {
        "ann@example.com": ("Ann Lee", BOB, {"a1", "a2"}),
        "bob@example.com": (None, None, set()),
        "carol@example.com": ("Carol", None, {"b1"}),
    }
    # Importing the same file again changes nothing.
    assert await run_import(world, tmp_path, content) == ImportReport(0, 0, 0)


async def test_progress_every_500_rows_and_at_the_end(world: World, tmp_path: Path) -> None:
    rows = "".join(f"c{i}@example.com\n" for i in range(1200))
    calls: list[tuple[int, int]] = []
    report = await run_import(world, tmp_path, "email\n" + rows, calls)
    assert report.created == 1200
    assert calls == [(500, 1200), (1000, 1200), (1200, 1200)]
    empty: list[tuple[int, int]] = []
    assert await run_import(world, tmp_path, "email\n", empty) == ImportReport(0, 0, 0)
    assert empty == [(0, 0)]


@pytest.mark.slow
async def test_twenty_thousand_rows(world: World, tmp_path: Path) -> None:
    await world.contacts.upsert(
        team_id=TEAM, contact=ContactIn(email="c7@example.com", visitor_ids=("old",))
    )
    owners = ("alice@acme.test", "U0BOB", "")
    rows = "".join(
        f"c{i}@example.com,Contact {i},{owners[i % 3]},v{i}a;v{i}b\n" for i in range(20_000)
    )
    started = time.monotonic()
    report = await run_import(world, tmp_path, "email,name,owner,visitor_ids\n" + rows)
    elapsed = time.monotonic() - started
    assert report == ImportReport(created=19_999, updated=1, tokens_linked=40_000)
    contacts = await stored(world)
    assert len(contacts) == 20_000
    assert contacts["c7@example.com"] == ("Contact 7", BOB, {"old", "v7a", "v7b"})
    assert contacts["c19998@example.com"] == ("Contact 19998", ALICE, {"v19998a", "v19998b"})
    assert len(world.fake.calls_to("users.lookupByEmail")) == 1
    assert elapsed < 30, f"took {elapsed:.1f}s"
