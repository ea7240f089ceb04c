"""widget settings per chatflow

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("chatflows", schema=None) as batch_op:
        batch_op.add_column(sa.Column("widget", sa.JSON(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("chatflows", schema=None) as batch_op:
        batch_op.drop_column("widget")
