"""reverse note mode per chatflow; who closed a conversation

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 17:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("chatflows", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("note_mode", sa.String(length=10), nullable=False, server_default="prefix")
        )
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("closed_by", sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_column("closed_by")
    with op.batch_alter_table("chatflows", schema=None) as batch_op:
        batch_op.drop_column("note_mode")
