"""Replicas that start together on one PostgreSQL migrate it once (an advisory lock around the upgrade)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import create_engine, text

from pose_analyzer.storage import Database, create_database
from tests.e2e.test_storage_postgres import postgres_url
from tests.e2e.test_storage_postgres import pytestmark as postgres_marks

pytestmark = postgres_marks
__all__ = ["postgres_url"]  # the fixture, used below by name


def test_replicas_starting_together_migrate_an_empty_database_once(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()

    def start_replica(_: int) -> str | None:
        database = create_database(postgres_url)  # what each replica's start-up does
        try:
            return database.current_revision()
        finally:
            database.dispose()

    with ThreadPoolExecutor(max_workers=6) as pool:
        revisions = list(pool.map(start_replica, range(6)))
    assert revisions == [Database.head_revision()] * 6
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as connection:
            versions = connection.execute(text("SELECT count(*) FROM alembic_version")).scalar_one()
    finally:
        engine.dispose()
    assert versions == 1
