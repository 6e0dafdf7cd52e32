"""Migrations, the schema they build, SQLite settings and bad URLs."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import StatementError

from pose_analyzer.storage import Database, StorageError, create_database
from pose_analyzer.storage.database import MIGRATIONS_DIR, alembic_config
from pose_analyzer.storage.models import AnalysisSession, Base

TABLES = {"sessions", "streams", "reps", "rep_faults", "angle_seconds"}


def _schema_differences(database: Database) -> list[object]:
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def test_upgrade_builds_the_schema_of_the_models(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'pose.db'}")
    assert database.current_revision() is None
    database.upgrade()
    assert database.current_revision() == Database.head_revision()
    assert set(inspect(database.engine).get_table_names()) >= TABLES
    assert _schema_differences(database) == []
    database.dispose()


def test_models_changed_without_a_migration_are_caught(tmp_path: Path) -> None:
    """The comparison above can fail: a schema missing an index is reported."""
    database = create_database(f"sqlite:///{tmp_path / 'pose.db'}")
    with database.engine.begin() as connection:
        connection.execute(text("DROP INDEX ix_reps_exercise"))
    assert any("ix_reps_exercise" in str(diff) for diff in _schema_differences(database))
    database.dispose()


def test_upgrade_is_idempotent_and_keeps_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'pose.db'}"
    database = create_database(url)
    with database.session() as db:
        db.add(AnalysisSession(id="kept"))
    database.upgrade()
    database.dispose()
    again = create_database(url)
    assert again.current_revision() == Database.head_revision()
    with again.session() as db:
        assert db.get(AnalysisSession, "kept") is not None
    again.dispose()


def test_downgrade_to_base_and_back(tmp_path: Path) -> None:
    database = create_database(f"sqlite:///{tmp_path / 'pose.db'}")
    config = alembic_config()
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert not TABLES & set(inspect(database.engine).get_table_names())
    database.upgrade()
    assert _schema_differences(database) == []
    database.dispose()


def test_migrations_ship_inside_the_package() -> None:
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert any((MIGRATIONS_DIR / "versions").glob("*.py"))


def test_sqlite_file_uses_wal_and_foreign_keys(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "pose.db"  # parent folders are made
    database = create_database(f"sqlite:///{path}")
    with database.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert path.is_file()
    database.dispose()


def test_in_memory_sqlite_shares_one_database_across_sessions() -> None:
    database = create_database("sqlite://")
    with database.session() as db:
        db.add(AnalysisSession(id="a"))
    with database.session() as db:
        assert db.get(AnalysisSession, "a") is not None
    database.dispose()


@pytest.mark.parametrize("url", ["not a url", "nosuchdialect://host/db"])
def test_bad_url_is_a_storage_error(url: str) -> None:
    with pytest.raises(StorageError, match="database URL"):
        Database(url)


def test_naive_datetimes_are_refused(tmp_path: Path) -> None:
    database = create_database(f"sqlite:///{tmp_path / 'pose.db'}")

    def add_naive() -> None:
        with database.session() as db:
            db.add(AnalysisSession(id="n", created_at=datetime(2026, 1, 1, 12, 0)))

    with pytest.raises(StatementError, match="naive datetime"):
        add_naive()
    database.dispose()
