"""Camera rigs (``rigs``) and the triangulated moments of 3D sessions (``frames_3d``).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

Written out in full (no imports from ``models``), like 0001.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "rigs",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.Column("camera_count", sa.Integer(), nullable=False),
        sa.Column("rig", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_rigs")),
    )
    op.create_table(
        "frames_3d",
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("capture_ts", sa.Float(), nullable=False),
        sa.Column("reprojection_px", sa.Float(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_frames_3d_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", "seq", name=op.f("pk_frames_3d")),
    )


def downgrade() -> None:
    op.drop_table("frames_3d")
    op.drop_table("rigs")
