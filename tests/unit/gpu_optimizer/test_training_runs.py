"""The run registry's record of a run seen running, and the reporter that feeds it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from gpu_optimizer.training.registry import RunReport, RunStore
from gpu_optimizer.training.reporting import RunReporter


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RunStore]:
    runs = RunStore(f"sqlite:///{tmp_path}/runs.db")
    yield runs
    runs.close()


def report(status: str, step: int) -> RunReport:
    return RunReport.model_validate({"status": status, "step": step, "max_steps": 100})


def test_the_first_running_report_and_the_count_of_them_are_kept(store: RunStore) -> None:
    store.report("r", report("running", 10))
    first = store.get("r")
    assert first is not None
    store.report("r", report("running", 20))
    store.report("r", report("finished", 100))

    run = store.get("r")
    assert run is not None
    assert (run.status, run.step) == ("finished", 100)
    assert (run.first_step, run.running_reports) == (10, 2)
    assert run.started_at == first.started_at == first.updated_at
    assert run.started_at is not None
    assert run.created_at <= run.started_at <= run.updated_at


def test_a_run_never_reported_running_has_no_running_record(store: RunStore) -> None:
    store.report("quick", report("finished", 100))
    run = store.get("quick")
    assert run is not None
    assert (run.started_at, run.first_step, run.running_reports) == (None, None, 0)
    listed = {r.name: r for r in store.list()}
    assert listed["quick"].running_reports == 0


def test_running_again_after_a_final_status_starts_a_new_record(store: RunStore) -> None:
    store.report("r", report("running", 10))
    store.report("r", report("running", 20))
    store.report("r", report("aborted", 25))
    aborted = store.get("r")
    assert aborted is not None
    assert (aborted.first_step, aborted.running_reports) == (10, 2)  # the proof outlives the run

    store.report("r", report("running", 30))
    resumed = store.get("r")
    assert resumed is not None
    assert (resumed.first_step, resumed.running_reports) == (30, 1)
    assert resumed.started_at == resumed.updated_at  # set by the report that resumed it


def test_a_database_made_before_the_running_record_gets_its_columns(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    engine = create_engine(url)
    with engine.begin() as conn:  # the table as the first release made it, with one run
        conn.execute(
            text(
                "CREATE TABLE training_runs (name VARCHAR(64) PRIMARY KEY, status VARCHAR(16),"
                " step INTEGER, max_steps INTEGER, loss FLOAT, samples_per_s FLOAT,"
                " oom_events INTEGER, rollbacks INTEGER, restarts INTEGER, world_size INTEGER,"
                " micro_batch INTEGER, config_digest VARCHAR(64), eval JSON,"
                " created_at DATETIME, updated_at DATETIME)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO training_runs VALUES ('old', 'finished', 5, 5, 0.1, 1.0, 0, 0, 0, 1,"
                " NULL, '', '{}', '2026-01-01 00:00:00', '2026-01-01 00:00:01')"
            )
        )
    engine.dispose()

    store = RunStore(url)
    try:
        old = store.get("old")
        assert old is not None
        assert (old.step, old.started_at, old.first_step, old.running_reports) == (5, None, None, 0)
        store.report("new", report("running", 1))
        new = store.get("new")
        assert new is not None
        assert (new.first_step, new.running_reports) == (1, 1)
    finally:
        store.close()
    RunStore(url).close()  # opened again: the columns are there, nothing to add


class _Service(ThreadingHTTPServer):
    """Records every PUT body; the first one is held until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bodies: list[dict[str, Any]] = []
        self.holding = threading.Event()
        self.release = threading.Event()


class _Handler(BaseHTTPRequestHandler):
    server: _Service

    def do_PUT(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if not self.server.bodies and not self.server.holding.is_set():
            self.server.holding.set()
            self.server.release.wait(timeout=30)
        self.server.bodies.append(body)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_the_reporter_supersedes_a_waiting_report_only_with_one_of_the_same_status() -> None:
    service = _Service()
    thread = threading.Thread(target=service.serve_forever, daemon=True)
    thread.start()
    try:
        reporter = RunReporter(f"http://127.0.0.1:{service.server_address[1]}", "r", timeout_s=30)
        reporter.report({"status": "running", "step": 1})
        assert service.holding.wait(timeout=30)  # the first is being sent: the next ones wait
        for step in (2, 3):
            reporter.report({"status": "running", "step": step})
        reporter.report({"status": "finished", "step": 4})
        service.release.set()
        reporter.close()
    finally:
        service.release.set()
        service.shutdown()
        service.server_close()
    assert [(b["status"], b["step"]) for b in service.bodies] == [
        ("running", 1),
        ("running", 3),
        ("finished", 4),
    ]
    assert reporter.sent == 3
