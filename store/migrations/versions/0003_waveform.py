"""Add the waveforms table (a call's stereo recording drawn once) and an index on calls.ended_at (retention).

Revision ID: 0003
Revises: 0001
Create Date: 2026-12-03 00:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: Union[str, Sequence[str], None] = "0002"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "waveforms",
        sa.Column("call_sid", sa.String(64), nullable=False),
        sa.Column("envelope", sa.JSON(none_as_null=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["call_sid"], ["calls.call_sid"], name=op.f("fk_waveforms_call_sid_calls"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("call_sid", name=op.f("pk_waveforms")),
    )
    op.create_index("ix_calls_ended_at", "calls", ["ended_at"])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_calls_ended_at", table_name="calls")
    op.drop_table("waveforms")
