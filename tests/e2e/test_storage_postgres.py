"""The storage layer against a real PostgreSQL: a throwaway cluster started for this test session.

Runs every test of tests/unit/pose_analyzer/test_storage_repository.py with its ``database``
fixture pointed at PostgreSQL, plus the migration/model comparison and a restart.  Skips with the
reason when no PostgreSQL DBAPI driver is installed or the server binaries are absent
(Debian: ``apt-get install -y postgresql``).
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from pose_analyzer.storage import Database, create_database, get_session, start_session
from pose_analyzer.storage.models import Base


def _driver() -> str | None:
    for module, dialect in (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return dialect
    return None


def _bin_dir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    return versions[-1].parent if versions else None


DIALECT = _driver()
BIN_DIR = _bin_dir()
pytestmark = [
    pytest.mark.skipif(DIALECT is None, reason="no PostgreSQL driver in the lock (needs psycopg[binary])"),
    pytest.mark.skipif(
        BIN_DIR is None, reason="PostgreSQL server binaries absent (apt-get install postgresql)"
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """Start a cluster on a free port on 127.0.0.1 (socket in its own folder); yield its URL; remove it."""
    assert BIN_DIR is not None
    # initdb refuses to run as root: run the server as "postgres" in a folder that user owns.
    # (pytest's tmp_path is root-only, so the cluster gets its own temporary folder.)
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="pose-pg-"))
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root)
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        os.chown(root, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", _free_port()

    def run(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, text=True, timeout=120)

    try:
        run(
            str(BIN_DIR / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        run(
            str(BIN_DIR / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(root / "server.log"),
            "-w",
            "start",
        )
    except subprocess.CalledProcessError as exc:
        server_log = root / "server.log"
        details = server_log.read_text() if server_log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {exc.stderr}{details}")
    try:
        yield f"{DIALECT}://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, str(BIN_DIR / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(root, ignore_errors=True)


def _empty(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()


@pytest.fixture
def database(postgres_url: str) -> Iterator[Database]:
    """A freshly migrated, empty PostgreSQL database (overrides the unit tests' SQLite one)."""
    _empty(postgres_url)
    db = create_database(postgres_url)
    yield db
    db.dispose()


def _load_repository_tests() -> dict[str, object]:
    path = Path(__file__).resolve().parents[1] / "unit" / "pose_analyzer" / "test_storage_repository.py"
    spec = importlib.util.spec_from_file_location("_storage_repository_tests", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {name: getattr(module, name) for name in dir(module) if name.startswith("test_")}


# The same test functions, collected here, resolve ``database`` to the PostgreSQL fixture above.
globals().update(_load_repository_tests())


def test_postgres_schema_matches_the_models_and_upgrade_is_idempotent(database: Database) -> None:
    database.upgrade()
    assert database.current_revision() == Database.head_revision()
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_postgres_restart_reads_back_the_same_session(database: Database, postgres_url: str) -> None:
    with database.session() as db:
        session_id = start_session(db, exercise="squat", meta={"k": [1, 2]})
        before = get_session(db, session_id)
    database.dispose()
    reopened = create_database(postgres_url)
    with reopened.session() as db:
        assert get_session(db, session_id) == before
    reopened.dispose()


def _backend_pid(database: Database) -> int:
    with database.session() as db:
        return int(db.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(postgres_url: str, pid: int) -> None:
    engine = create_engine(postgres_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        engine.dispose()


def test_a_connection_idle_long_enough_is_pinged_and_replaced_when_the_server_dropped_it(
    postgres_url: str,
) -> None:
    database = Database(postgres_url, ping_after_idle_s=0.0)  # every checkout pings
    try:
        dropped = _backend_pid(database)
        _terminate(postgres_url, dropped)
        assert _backend_pid(database) != dropped  # the ping failed: a new connection, no error
    finally:
        database.dispose()


def test_a_connection_used_recently_is_not_pinged_and_fails_once_when_the_server_dropped_it(
    postgres_url: str,
) -> None:
    database = Database(postgres_url, ping_after_idle_s=3600.0)  # no ping: no round trip
    try:
        dropped = _backend_pid(database)
        _terminate(postgres_url, dropped)
        with pytest.raises(OperationalError):
            _backend_pid(database)
        assert _backend_pid(database) != dropped  # the pool was invalidated: the next one works
    finally:
        database.dispose()
