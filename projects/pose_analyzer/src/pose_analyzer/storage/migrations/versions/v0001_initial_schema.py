"""Initial schema: sessions, streams, reps, rep faults, per-second joint-angle aggregates.

Revision ID: 0001
Revises:
Create Date: 2026-11-23

Written out in full (no imports from ``models``), so this revision keeps meaning what it meant
when later revisions change the models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("ended_at", _utc(), nullable=True),
        sa.Column("exercise", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.CheckConstraint("status IN ('open', 'completed', 'failed')", name=op.f("ck_sessions_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions")),
    )
    op.create_index("ix_sessions_created_at", "sessions", ["created_at"])

    op.create_table(
        "streams",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("stream_id", sa.String(length=128), nullable=False),
        sa.Column("backend", sa.String(length=32), nullable=False),
        sa.Column("started_at", _utc(), nullable=False),
        sa.Column("ended_at", _utc(), nullable=True),
        sa.Column("clock_origin_s", sa.Float(), nullable=True),
        sa.Column("frames_received", sa.Integer(), nullable=False),
        sa.Column("frames_processed", sa.Integer(), nullable=False),
        sa.Column("frames_dropped", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("close_reason", sa.String(length=500), nullable=True),
        sa.CheckConstraint(
            "status IN ('open', 'completed', 'failed', 'interrupted')", name=op.f("ck_streams_status")
        ),
        sa.CheckConstraint(
            "frames_received >= 0 AND frames_processed >= 0 AND frames_dropped >= 0",
            name=op.f("ck_streams_frames_non_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name=op.f("fk_streams_session_id_sessions"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_streams")),
    )
    op.create_index("ix_streams_session_id_stream_id", "streams", ["session_id", "stream_id"])
    op.create_index("ix_streams_status", "streams", ["status"])

    op.create_table(
        "reps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("stream_pk", sa.Integer(), nullable=False),
        sa.Column("track_id", sa.Integer(), nullable=False),
        sa.Column("exercise", sa.String(length=64), nullable=False),
        sa.Column("rep_index", sa.Integer(), nullable=False),
        sa.Column("start_s", sa.Float(), nullable=False),
        sa.Column("end_s", sa.Float(), nullable=False),
        sa.Column("range_of_motion_deg", sa.Float(), nullable=False),
        sa.Column("tempo_s", sa.Float(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["stream_pk"], ["streams.id"], name=op.f("fk_reps_stream_pk_streams"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reps")),
        sa.UniqueConstraint("stream_pk", "track_id", "rep_index", name="uq_reps_stream_track_index"),
    )
    op.create_index("ix_reps_exercise", "reps", ["exercise"])

    op.create_table(
        "rep_faults",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rep_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("message", sa.String(length=500), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["rep_id"], ["reps.id"], name=op.f("fk_rep_faults_rep_id_reps"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rep_faults")),
    )
    op.create_index("ix_rep_faults_rep_id", "rep_faults", ["rep_id"])
    op.create_index("ix_rep_faults_code", "rep_faults", ["code"])

    op.create_table(
        "angle_seconds",
        sa.Column("stream_pk", sa.Integer(), nullable=False),
        sa.Column("track_id", sa.Integer(), nullable=False),
        sa.Column("angle", sa.String(length=64), nullable=False),
        sa.Column("second", sa.Integer(), nullable=False),
        sa.Column("mean_deg", sa.Float(), nullable=False),
        sa.Column("min_deg", sa.Float(), nullable=False),
        sa.Column("max_deg", sa.Float(), nullable=False),
        sa.Column("sample_count", sa.Integer(), nullable=False),
        sa.CheckConstraint("sample_count > 0", name=op.f("ck_angle_seconds_sample_count_positive")),
        sa.ForeignKeyConstraint(
            ["stream_pk"], ["streams.id"], name=op.f("fk_angle_seconds_stream_pk_streams"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("stream_pk", "track_id", "angle", "second", name=op.f("pk_angle_seconds")),
    )


def downgrade() -> None:
    op.drop_table("angle_seconds")
    op.drop_index("ix_rep_faults_code", table_name="rep_faults")
    op.drop_index("ix_rep_faults_rep_id", table_name="rep_faults")
    op.drop_table("rep_faults")
    op.drop_index("ix_reps_exercise", table_name="reps")
    op.drop_table("reps")
    op.drop_index("ix_streams_status", table_name="streams")
    op.drop_index("ix_streams_session_id_stream_id", table_name="streams")
    op.drop_table("streams")
    op.drop_index("ix_sessions_created_at", table_name="sessions")
    op.drop_table("sessions")
