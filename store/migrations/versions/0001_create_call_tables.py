"""Create the call store tables: calls, turns, stream_status_events, recordings.

Revision ID: 0001
Revises:
Create Date: 2026-11-21 00:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "calls",
        sa.Column("call_sid", sa.String(64), nullable=False),
        sa.Column("stream_sid", sa.String(64), nullable=True),
        sa.Column("from_number", sa.String(64), nullable=True),
        sa.Column("to_number", sa.String(64), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("mode", sa.String(16), nullable=True),
        sa.PrimaryKeyConstraint("call_sid", name=op.f("pk_calls")),
    )
    op.create_index("ix_calls_started_at", "calls", ["started_at"])

    op.create_table(
        "turns",
        sa.Column("call_sid", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("speaker", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("start_ms", sa.Integer(), nullable=False),
        sa.Column("end_ms", sa.Integer(), nullable=True),
        sa.Column("dtmf", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("interrupted", sa.Boolean(), nullable=True),
        sa.Column("heard", sa.Text(), nullable=True),
        sa.Column("latency_ms", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("latency_total_ms", sa.Integer(), nullable=True),
        sa.Column("extra", sa.JSON(none_as_null=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["call_sid"], ["calls.call_sid"], name=op.f("fk_turns_call_sid_calls"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("call_sid", "position", name=op.f("pk_turns")),
    )

    op.create_table(
        "stream_status_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("call_sid", sa.String(64), nullable=False),
        sa.Column("stream_sid", sa.String(64), nullable=True),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("timestamp", sa.String(64), nullable=True),
        sa.Column("name", sa.String(255), nullable=True),
        sa.ForeignKeyConstraint(
            ["call_sid"],
            ["calls.call_sid"],
            name=op.f("fk_stream_status_events_call_sid_calls"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stream_status_events")),
    )
    op.create_index("ix_stream_status_events_call_sid", "stream_status_events", ["call_sid"])

    op.create_table(
        "recordings",
        sa.Column("call_sid", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("content_type", sa.String(64), nullable=False),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("data", sa.LargeBinary(), nullable=True),
        sa.CheckConstraint("(path IS NULL) <> (data IS NULL)", name=op.f("ck_recordings_path_xor_data")),
        sa.ForeignKeyConstraint(
            ["call_sid"], ["calls.call_sid"], name=op.f("fk_recordings_call_sid_calls"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("call_sid", "kind", name=op.f("pk_recordings")),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("recordings")
    op.drop_index("ix_stream_status_events_call_sid", table_name="stream_status_events")
    op.drop_table("stream_status_events")
    op.drop_table("turns")
    op.drop_index("ix_calls_started_at", table_name="calls")
    op.drop_table("calls")
