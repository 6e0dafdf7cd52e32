"""Reps (with their faults) in ONE PostgreSQL statement: a rep on its way to being announced waits
for one round trip to the database, not one per row.

Each rep is an ``INSERT ... RETURNING id`` in a data-modifying CTE, its faults an ``INSERT ...
SELECT`` from that CTE joined to a ``VALUES`` list, and the stream's clock origin (when given) an
``UPDATE`` CTE; PostgreSQL runs every data-modifying CTE of the statement.  Executed on an
autocommit connection the statement is its own transaction, committed (and, with
``synchronous_commit`` on, flushed to the WAL) before ``execute`` returns.  SQLite has no
data-modifying CTEs: there ``repository.record_rep`` adds the rows through the ORM.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import (
    CTE,
    Float,
    Integer,
    Select,
    String,
    Table,
    column,
    insert,
    literal_column,
    select,
    true,
    update,
    values,
)

from pose_analyzer.storage.models import Repetition, RepFault, StreamRecord
from pose_analyzer.storage.repository import rep_columns
from pose_analyzer.types import RepRecord

_REPS = cast(Table, Repetition.__table__)
_FAULTS = cast(Table, RepFault.__table__)
_STREAMS = cast(Table, StreamRecord.__table__)


def reps_statement(
    stream_pk: int, reps: list[tuple[int, RepRecord]], clock_origin_s: float, store_origin: bool
) -> Select[Any]:
    """One statement inserting ``reps`` (track id, rep) of stream ``stream_pk`` with their faults,
    times relative to ``clock_origin_s``; ``store_origin`` also sets the stream's ``clock_origin_s``.

    Raises:
        ValueError: a rep with non-finite numbers or a bad fault (``check_rep``).
    """
    ctes: list[CTE] = []
    for n, (track_id, rep) in enumerate(reps):
        inserted = (
            insert(_REPS)
            .values(**rep_columns(stream_pk, track_id, rep, clock_origin_s))
            .returning(_REPS.c.id)
            .cte(f"rep{n}")
        )
        ctes.append(inserted)
        if rep.faults:
            rows = values(
                column("ord", Integer),
                column("code", String),
                column("message", String),
                column("weight", Float),
                name=f"faults{n}_rows",
            ).data([(i, f.code, f.message, f.weight) for i, f in enumerate(rep.faults)])
            # Ordered: the faults get ids (and so are read back) in the rep's order.
            chosen = (
                select(inserted.c.id, rows.c.code, rows.c.message, rows.c.weight)
                .select_from(inserted.join(rows, true()))
                .order_by(rows.c.ord)
            )
            ctes.append(
                insert(_FAULTS).from_select(["rep_id", "code", "message", "weight"], chosen).cte(f"faults{n}")
            )
    if store_origin:
        origin = update(_STREAMS).where(_STREAMS.c.id == stream_pk).values(clock_origin_s=clock_origin_s)
        ctes.append(origin.cte("origin"))
    return select(literal_column("1")).add_cte(*ctes)
