"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25 16:28:46.590536
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "chatflows",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("team_id", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("signing_secret", sa.String(length=128), nullable=False),
        sa.Column("route_users", sa.JSON(), nullable=False),
        sa.Column("welcome_message", sa.Text(), nullable=False),
        sa.Column("away_message", sa.Text(), nullable=False),
        sa.Column("note_prefix", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("public_key"),
    )
    with op.batch_alter_table("chatflows", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_chatflows_team_id"), ["team_id"], unique=False)

    op.create_table(
        "outbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("team_id", sa.String(length=20), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("conversation_id", sa.String(length=40), nullable=True),
        sa.Column("thread_id", sa.BigInteger(), nullable=True),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_outbox_conversation_id"), ["conversation_id"], unique=False
        )
        batch_op.create_index("ix_outbox_due", ["status", "next_attempt_at"], unique=False)

    op.create_table(
        "reps",
        sa.Column("team_id", sa.String(length=20), nullable=False),
        sa.Column("user_id", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("avatar_url", sa.String(length=500), nullable=True),
        sa.Column("is_bot", sa.Boolean(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("profile_checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("opted_in", sa.Boolean(), nullable=False),
        sa.Column("presence", sa.String(length=10), nullable=False),
        sa.Column("presence_checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dm_channel_id", sa.String(length=20), nullable=True),
        sa.PrimaryKeyConstraint("team_id", "user_id"),
    )
    op.create_table(
        "conversations",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("team_id", sa.String(length=20), nullable=False),
        sa.Column("chatflow_id", sa.String(length=40), nullable=False),
        sa.Column("visitor_id", sa.String(length=200), nullable=False),
        sa.Column("visitor_name", sa.String(length=200), nullable=True),
        sa.Column("visitor_email", sa.String(length=320), nullable=True),
        sa.Column("identity_verified", sa.Boolean(), nullable=False),
        sa.Column("page_url", sa.String(length=2000), nullable=True),
        sa.Column("token", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("routing_outcome", sa.String(length=10), nullable=False),
        sa.Column("routing", sa.JSON(), nullable=False),
        sa.Column("assignee", sa.String(length=20), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["chatflow_id"], ["chatflows.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_conversations_team_id"), ["team_id"], unique=False)
        batch_op.create_index(
            "uq_conversations_open_visitor",
            ["chatflow_id", "visitor_id"],
            unique=True,
            sqlite_where=sa.text("status = 'open'"),
            postgresql_where=sa.text("status = 'open'"),
        )

    op.create_table(
        "messages",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("team_id", sa.String(length=20), nullable=False),
        sa.Column("conversation_id", sa.String(length=40), nullable=False),
        sa.Column("author", sa.String(length=10), nullable=False),
        sa.Column("rep_user_id", sa.String(length=20), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("chatflow_id", sa.String(length=40), nullable=True),
        sa.Column("visitor_id", sa.String(length=200), nullable=True),
        sa.Column("client_message_id", sa.String(length=100), nullable=True),
        sa.Column("slack_channel", sa.String(length=20), nullable=True),
        sa.Column("slack_ts", sa.String(length=30), nullable=True),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("edited_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("chatflow_id", "visitor_id", "client_message_id"),
        sa.UniqueConstraint("team_id", "slack_channel", "slack_ts"),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_messages_conversation_id"), ["conversation_id"], unique=False
        )

    op.create_table(
        "slack_threads",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("team_id", sa.String(length=20), nullable=False),
        sa.Column("conversation_id", sa.String(length=40), nullable=False),
        sa.Column("rep_user_id", sa.String(length=20), nullable=True),
        sa.Column("channel_id", sa.String(length=20), nullable=True),
        sa.Column("thread_ts", sa.String(length=30), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("team_id", "channel_id", "thread_ts"),
    )
    with op.batch_alter_table("slack_threads", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_slack_threads_conversation_id"), ["conversation_id"], unique=False
        )

    op.create_table(
        "feed",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("conversation_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column(
            "message_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("feed", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_feed_conversation_id"), ["conversation_id"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("feed", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_feed_conversation_id"))

    op.drop_table("feed")
    with op.batch_alter_table("slack_threads", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_slack_threads_conversation_id"))

    op.drop_table("slack_threads")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_messages_conversation_id"))

    op.drop_table("messages")
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_conversations_open_visitor",
            sqlite_where=sa.text("status = 'open'"),
            postgresql_where=sa.text("status = 'open'"),
        )
        batch_op.drop_index(batch_op.f("ix_conversations_team_id"))

    op.drop_table("conversations")
    op.drop_table("reps")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_due")
        batch_op.drop_index(batch_op.f("ix_outbox_conversation_id"))

    op.drop_table("outbox")
    with op.batch_alter_table("chatflows", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_chatflows_team_id"))

    op.drop_table("chatflows")
