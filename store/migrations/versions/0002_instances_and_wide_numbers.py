"""Widen From/To and status timestamps to text; calls.instance_id; the instances table.

Twilio's ``From``/``To`` can be SIP addresses longer than 64 characters, which failed every
save of such a call on PostgreSQL. Each server process registers in ``instances`` and stamps
the calls it keeps, so a process starting next to others ends only the calls of dead ones.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 00:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: Union[str, Sequence[str], None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema (SQLite: batch mode copies the tables; see store.database.upgrade_schema)."""
    with op.batch_alter_table("calls") as batch:
        batch.alter_column("from_number", type_=sa.Text(), existing_type=sa.String(64), existing_nullable=True)
        batch.alter_column("to_number", type_=sa.Text(), existing_type=sa.String(64), existing_nullable=True)
        batch.add_column(sa.Column("instance_id", sa.String(64), nullable=True))
    with op.batch_alter_table("stream_status_events") as batch:
        batch.alter_column("timestamp", type_=sa.Text(), existing_type=sa.String(64), existing_nullable=True)
    op.create_table(
        "instances",
        sa.Column("instance_id", sa.String(64), nullable=False),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("instance_id", name=op.f("pk_instances")),
    )


def downgrade() -> None:
    """Downgrade schema (a From/To longer than 64 characters fails it on PostgreSQL)."""
    op.drop_table("instances")
    with op.batch_alter_table("stream_status_events") as batch:
        batch.alter_column("timestamp", type_=sa.String(64), existing_type=sa.Text(), existing_nullable=True)
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("instance_id")
        batch.alter_column("to_number", type_=sa.String(64), existing_type=sa.Text(), existing_nullable=True)
        batch.alter_column("from_number", type_=sa.String(64), existing_type=sa.Text(), existing_nullable=True)
