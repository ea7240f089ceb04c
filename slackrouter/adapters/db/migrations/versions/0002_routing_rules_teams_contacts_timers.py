"""routing rules: teams, contacts, timers

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 16:35:55.247325
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

OUT_OF_HOURS = "We're closed right now. Leave your email and we'll get back to you."


def upgrade() -> None:

    op.create_table(
        "contacts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("team_id", sa.String(length=20), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("owner_user_id", sa.String(length=20), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("team_id", "email"),
    )
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_contacts_team_id"), ["team_id"], unique=False)

    op.create_table(
        "teams",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("team_id", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("members", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_teams_team_id"), ["team_id"], unique=False)

    op.create_table(
        "usergroups",
        sa.Column("team_id", sa.String(length=20), nullable=False),
        sa.Column("id", sa.String(length=20), nullable=False),
        sa.Column("handle", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("members", sa.JSON(), nullable=False),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("team_id", "id"),
    )
    op.create_table(
        "contact_tokens",
        sa.Column("team_id", sa.String(length=20), nullable=False),
        sa.Column("token", sa.String(length=200), nullable=False),
        sa.Column(
            "contact_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("team_id", "token"),
    )
    with op.batch_alter_table("contact_tokens", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_contact_tokens_contact_id"), ["contact_id"], unique=False
        )

    op.create_table(
        "timers",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("team_id", sa.String(length=20), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("conversation_id", sa.String(length=40), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("conversation_id", "kind"),
    )
    with op.batch_alter_table("timers", schema=None) as batch_op:
        batch_op.create_index("ix_timers_due", ["status", "due_at"], unique=False)

    with op.batch_alter_table("chatflows", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("route_teams", sa.JSON(), nullable=False, server_default="[]")
        )
        batch_op.add_column(
            sa.Column("assignment", sa.String(length=20), nullable=False, server_default="all")
        )
        batch_op.add_column(
            sa.Column("rotate_to_owner", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("offline_fallback", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("channel_id", sa.String(length=20), nullable=True))
        batch_op.add_column(
            sa.Column("escalation_seconds", sa.Integer(), nullable=False, server_default="120")
        )
        batch_op.add_column(sa.Column("hours", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "out_of_hours_message",
                sa.Text(),
                nullable=False,
                server_default=OUT_OF_HOURS,
            )
        )

    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "contact_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
            )
        )
        batch_op.add_column(sa.Column("offered", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(
            sa.Column("missed", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_foreign_key(
            "fk_conversations_contact_id", "contacts", ["contact_id"], ["id"], ondelete="SET NULL"
        )

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("payload", sa.JSON(), nullable=True))

    with op.batch_alter_table("reps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("email", sa.String(length=320), nullable=True))
        batch_op.add_column(
            sa.Column("is_guest", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("dnd", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("dnd_checked_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("last_assigned_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:

    with op.batch_alter_table("reps", schema=None) as batch_op:
        batch_op.drop_column("last_assigned_at")
        batch_op.drop_column("dnd_checked_at")
        batch_op.drop_column("dnd")
        batch_op.drop_column("is_guest")
        batch_op.drop_column("email")

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("payload")

    with op.batch_alter_table("conversations", schema=None) as batch_op:
        # WARNING: constraint name is None; this directive will fail as
        # rendered.  Add a name, or use a naming convention; see
        # https://alembic.sqlalchemy.org/en/latest/naming.html
        batch_op.drop_constraint("fk_conversations_contact_id", type_="foreignkey")
        batch_op.drop_column("closed_at")
        batch_op.drop_column("missed")
        batch_op.drop_column("offered")
        batch_op.drop_column("contact_id")

    with op.batch_alter_table("chatflows", schema=None) as batch_op:
        batch_op.drop_column("out_of_hours_message")
        batch_op.drop_column("hours")
        batch_op.drop_column("escalation_seconds")
        batch_op.drop_column("channel_id")
        batch_op.drop_column("offline_fallback")
        batch_op.drop_column("rotate_to_owner")
        batch_op.drop_column("assignment")
        batch_op.drop_column("route_teams")

    with op.batch_alter_table("timers", schema=None) as batch_op:
        batch_op.drop_index("ix_timers_due")

    op.drop_table("timers")
    with op.batch_alter_table("contact_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_contact_tokens_contact_id"))

    op.drop_table("contact_tokens")
    op.drop_table("usergroups")
    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_teams_team_id"))

    op.drop_table("teams")
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_contacts_team_id"))

    op.drop_table("contacts")
