"""Outbox indexes that keep delivery's reads short under a backlog: the pending items in order
(a round reads the oldest due ones) and each thread's pending items (an item waits for the
earlier ones of its thread)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 05:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_outbox_pending", "outbox", ["status", "id"])
    op.create_index("ix_outbox_thread", "outbox", ["thread_id", "status", "id"])


def downgrade() -> None:
    op.drop_index("ix_outbox_thread", table_name="outbox")
    op.drop_index("ix_outbox_pending", table_name="outbox")
