"""Engine, sessions and migrations for one database URL (a SQLite file by default, PostgreSQL by URL)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from pose_analyzer.storage.errors import StorageError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# PostgreSQL advisory lock key held while migrating: replicas that start together take turns, and
# the later ones find the schema at head (any 64-bit constant unique to this purpose).
MIGRATION_LOCK_KEY = 0x706F73655F6D6967  # "pose_mig"


def _is_memory_sqlite(database: str | None) -> bool:
    return database in (None, "", ":memory:") or (database or "").startswith("file::memory:")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, *, wal: bool, busy_timeout: bool) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # SQLite leaves foreign keys (and so ON DELETE CASCADE) off unless each connection asks.
        cursor.execute("PRAGMA foreign_keys=ON")
        if busy_timeout:
            # Wait for a writer instead of failing at once with "database is locked" (a URL's
            # ``?timeout=<seconds>`` sets another wait instead).
            cursor.execute("PRAGMA busy_timeout=5000")
        if wal:
            # WAL lets readers (the REST API) run while a stream commits.  With synchronous=NORMAL a
            # committed transaction survives a process crash; only a power loss may drop the last ones.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


# A pooled server connection idle at least this long is pinged before use; one used more recently
# is trusted.  A ping is a round trip, and on a machine busy with inference each round trip costs
# milliseconds that a rep waiting for its commit would wait too.  A connection the server dropped
# within this window fails its transaction once: SQLAlchemy then invalidates the whole pool, and
# the stream writer's retries (writer.RetryPolicy) go on with fresh connections.
PING_AFTER_IDLE_S = 5.0


def _ping_when_idle(engine: Engine, idle_s: float) -> None:
    """Ping a connection at checkout only when it sat in the pool ``idle_s`` or longer; one that
    does not answer is replaced (``DisconnectionError``: the pool connects anew)."""

    def _note(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    event.listen(engine.pool, "connect", _note)
    event.listen(engine.pool, "checkin", _note)

    @event.listens_for(engine.pool, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("idle_since", -math.inf) < idle_s:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError(f"a pooled connection did not answer: {exc}") from exc


def make_engine(url: str, *, echo: bool = False, ping_after_idle_s: float = PING_AFTER_IDLE_S) -> Engine:
    """An engine for ``url``; for SQLite, with foreign keys on, WAL for files and the parent folder made.

    Raises:
        StorageError: the URL cannot be parsed or names an unknown dialect or missing driver.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StorageError(f"invalid database URL {url!r}: {exc}") from exc
    kwargs: dict[str, Any] = {"echo": echo}
    is_sqlite = parsed.get_backend_name() == "sqlite"
    memory = is_sqlite and _is_memory_sqlite(parsed.database)
    if memory:
        # One shared connection, otherwise every pooled connection would see its own empty database.
        kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
    elif is_sqlite and parsed.database:
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_engine(parsed, **kwargs)
    except (ArgumentError, ImportError) as exc:
        raise StorageError(f"cannot open database URL {parsed.render_as_string()!r}: {exc}") from exc
    if not is_sqlite:
        _ping_when_idle(engine, ping_after_idle_s)
    if is_sqlite:
        wal = not memory
        default_timeout = "timeout" not in parsed.query

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, record: Any) -> None:
            _sqlite_pragmas(dbapi_connection, record, wal=wal, busy_timeout=default_timeout)

    return engine


def alembic_config() -> Config:
    """Alembic's configuration, built in code: the scripts ship inside the package, no alembic.ini."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


class Database:
    """One database: its engine, a session factory and its migrations.

    Use ``with db.session() as s:`` for a unit of work (commit on success, rollback on error).
    """

    def __init__(self, url: str, *, echo: bool = False, ping_after_idle_s: float = PING_AFTER_IDLE_S) -> None:
        self.url = url
        self.engine = make_engine(url, echo=echo, ping_after_idle_s=ping_after_idle_s)
        # expire_on_commit=False: objects stay readable after the unit of work commits.
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits when the block ends and rolls back if it raises."""
        with self._sessions() as session, session.begin():
            yield session

    def upgrade(self, revision: str = "head") -> None:
        """Migrate the schema to ``revision`` (default: the newest); a no-op when already there.

        On PostgreSQL the migration runs under a transaction-level advisory lock, so several
        processes starting together on one database migrate it once: the others wait, then
        find it at ``revision``.
        """
        config = alembic_config()
        sqlite = self.engine.dialect.name == "sqlite"
        with self.engine.connect() as connection:
            if sqlite:
                # Batch migrations rebuild a table (copy, drop, rename): with foreign keys on, the
                # drop would cascade to the rows that reference it.  The pragma only takes effect
                # outside a transaction, so it is set before the migration's transaction begins.
                connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
                connection.commit()
            try:
                with connection.begin():
                    if self.engine.dialect.name == "postgresql":
                        # Released when this transaction ends (commit or rollback).
                        connection.execute(
                            text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                        )
                    # env.py runs on this connection, so it sees the same pragmas (and in-memory database).
                    config.attributes["connection"] = connection
                    command.upgrade(config, revision)
                    if sqlite:
                        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                        if broken:
                            raise StorageError(f"migration left {len(broken)} dangling references")
            finally:
                if sqlite:
                    connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                    connection.commit()

    def current_revision(self) -> str | None:
        """The schema revision the database is at, ``None`` before the first migration."""
        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    @staticmethod
    def head_revision() -> str | None:
        """The newest revision the package ships."""
        return ScriptDirectory.from_config(alembic_config()).get_current_head()

    def dispose(self) -> None:
        """Close every pooled connection (call at shutdown)."""
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.dispose()


def create_database(url: str, *, upgrade: bool = True, echo: bool = False) -> Database:
    """Open the database at ``url`` and (by default) migrate it to the newest schema."""
    database = Database(url, echo=echo)
    if upgrade:
        try:
            database.upgrade()
        except BaseException:
            database.dispose()
            raise
    return database
