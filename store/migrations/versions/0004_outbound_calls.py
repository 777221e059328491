"""Add calls.direction, calls.answered_by and calls.transferred_to (outbound calls, AMD, transfers).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 00:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: Union[str, Sequence[str], None] = "0003"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema (nullable columns: existing rows read as unknown)."""
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("direction", sa.String(16), nullable=True))
        batch.add_column(sa.Column("answered_by", sa.String(32), nullable=True))
        batch.add_column(sa.Column("transferred_to", sa.Text(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("transferred_to")
        batch.drop_column("answered_by")
        batch.drop_column("direction")
