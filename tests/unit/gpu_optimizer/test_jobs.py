"""Job store on a real SQLite file and the runner's state machine."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from gpu_optimizer.jobs import JobContext, JobFailure, JobRunner, JobStore, QueueFullError


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    s = JobStore(f"sqlite:///{tmp_path}/sub/jobs.db")
    yield s  # type: ignore[misc]
    s.close()


def square(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    ctx.progress(0.5, "half way")
    return {"value": params["x"] ** 2}


def boom(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    raise ValueError("bad model")


def test_job_runs_to_success_with_result(store: JobStore) -> None:
    states: list[str] = []
    runner = JobRunner(store, on_state=lambda kind, state: states.append(state))
    record = runner.submit("square", {"x": 7}, square)
    assert record.state == "queued"
    done = runner.wait(record.id, timeout=30)
    assert done is not None
    assert done.state == "succeeded"
    assert done.result == {"value": 49}
    assert done.progress == 1.0
    assert done.started_at is not None
    assert done.finished_at is not None
    assert done.finished_at >= done.started_at
    assert states == ["queued", "running", "succeeded"]
    runner.shutdown()


def test_failing_job_records_the_error(store: JobStore) -> None:
    runner = JobRunner(store)
    done = runner.wait(runner.submit("boom", {}, boom).id, timeout=30)
    assert done is not None
    assert done.state == "failed"
    assert done.error == f"the job failed (job id {done.id})", "exception text stays in the log"
    assert done.result is None
    runner.shutdown()


def test_a_job_failure_message_is_what_the_client_reads(store: JobStore) -> None:
    def refuse(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        raise JobFailure("batch size 4096 does not fit in 8 GiB")

    runner = JobRunner(store)
    done = runner.wait(runner.submit("refuse", {}, refuse).id, timeout=30)
    assert done is not None
    assert done.error == "batch size 4096 does not fit in 8 GiB"
    runner.shutdown()


def test_the_queue_is_bounded_and_frees_as_jobs_start(store: JobStore) -> None:
    started, release = threading.Event(), threading.Event()

    def blocker(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        started.set()
        release.wait(30)
        return {}

    runner = JobRunner(store, workers=1, max_queued=2)
    first = runner.submit("block", {}, blocker)
    assert started.wait(30)
    waiting = [runner.submit("square", {"x": i}, square) for i in range(2)]
    assert runner.waiting == 2
    with pytest.raises(QueueFullError) as full:
        runner.submit("square", {"x": 9}, square)
    assert full.value.retry_after_s >= 1
    assert len(store.list()) == 3, "a refused job leaves no row"
    release.set()
    for record in [first, *waiting]:
        done = runner.wait(record.id, timeout=30)
        assert done is not None
        assert done.state == "succeeded"
    assert runner.waiting == 0
    runner.wait(runner.submit("square", {"x": 2}, square).id, timeout=30)
    runner.shutdown()


def test_jobs_persist_across_store_reopen_and_unfinished_ones_fail(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/jobs.db"
    first = JobStore(url)
    finished = JobRunner(first)
    done_id = finished.submit("square", {"x": 3}, square).id
    finished.wait(done_id, timeout=30)
    hanging = first.create("square", {"x": 1})
    first.close()
    finished.shutdown()

    second = JobStore(url)
    assert second.get(done_id).result == {"value": 9}  # type: ignore[union-attr]
    assert second.fail_unfinished("service restarted") == 1
    stale = second.get(hanging.id)
    assert stale is not None
    assert stale.state == "failed"
    assert stale.error == "service restarted"
    assert [j.id for j in second.list(state="failed")] == [hanging.id]
    second.close()


def test_unknown_state_is_rejected(store: JobStore) -> None:
    record = store.create("x", {})
    with pytest.raises(ValueError, match="unknown job state"):
        store.update(record.id, state="exploded")
