"""Sessions may end "interrupted": the process stopped (crash, restart) while one of its streams was open.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NEW = "status IN ('open', 'completed', 'failed', 'interrupted')"
_OLD = "status IN ('open', 'completed', 'failed')"


def _replace_check(sql: str) -> None:
    name = op.f("ck_sessions_status")  # the final name (no naming convention applied again)
    if op.get_context().dialect.name != "sqlite":
        op.drop_constraint(name, "sessions", type_="check")
        op.create_check_constraint(name, "sessions", sql)
        return
    # SQLite cannot alter a CHECK constraint: batch mode rebuilds the table without the old one
    # (SQLite's reflection does not see CHECK constraints) and with the new one.
    with op.batch_alter_table("sessions", recreate="always") as table:
        table.create_check_constraint(name, sql)


def upgrade() -> None:
    _replace_check(_NEW)


def downgrade() -> None:
    op.execute("UPDATE sessions SET status = 'failed' WHERE status = 'interrupted'")
    _replace_check(_OLD)
