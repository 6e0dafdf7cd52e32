"""Reps may be unscored: ``reps.score`` allows NULL.

A rep on which no form rule could be measured (occluded joints, say) has no score; storing
100 for it would tell a coach that an unseen rep was flawless.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Batch mode rebuilds the table on SQLite, which cannot alter a column in place.
    with op.batch_alter_table("reps") as table:
        table.alter_column("score", existing_type=sa.Float(), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM reps WHERE score IS NULL")
    with op.batch_alter_table("reps") as table:
        table.alter_column("score", existing_type=sa.Float(), nullable=False)
