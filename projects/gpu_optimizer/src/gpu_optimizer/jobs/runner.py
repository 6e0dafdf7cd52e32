"""Run jobs in a worker thread, one at a time, recording state, progress and results."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from gpu_optimizer.jobs.store import JobRecord, JobStore

log = logging.getLogger(__name__)


class JobContext:
    """Handed to a job function so it can report progress."""

    def __init__(self, store: JobStore, job_id: str) -> None:
        self._store = store
        self.job_id = job_id

    def progress(self, fraction: float, message: str = "") -> None:
        self._store.update(self.job_id, progress=max(0.0, min(1.0, fraction)), message=message)


JobFunction = Callable[[dict[str, Any], JobContext], dict[str, Any]]


class JobRunner:
    """Executes submitted jobs on ``workers`` threads (one by default: GPU jobs should not overlap)."""

    def __init__(
        self, store: JobStore, workers: int = 1, on_state: Callable[[str, str], None] | None = None
    ) -> None:
        self.store = store
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="job")
        self._futures: dict[str, Future[None]] = {}
        self._lock = threading.Lock()
        self._on_state = on_state or (lambda kind, state: None)

    def submit(self, kind: str, params: dict[str, Any], fn: JobFunction) -> JobRecord:
        record = self.store.create(kind, params)
        self._on_state(kind, "queued")
        future = self._pool.submit(self._run, record.id, kind, params, fn)
        with self._lock:
            self._futures[record.id] = future
        future.add_done_callback(lambda _: self._forget(record.id))
        return record

    def _forget(self, job_id: str) -> None:
        with self._lock:
            self._futures.pop(job_id, None)

    def _run(self, job_id: str, kind: str, params: dict[str, Any], fn: JobFunction) -> None:
        self.store.update(job_id, state="running", started_at=datetime.now(UTC), message="running")
        self._on_state(kind, "running")
        try:
            result = fn(params, JobContext(self.store, job_id))
        except Exception as exc:  # the job's failure is its result, not the service's
            log.warning("job failed", extra={"job_id": job_id, "kind": kind, "error": str(exc)})
            self.store.update(
                job_id,
                state="failed",
                error=f"{type(exc).__name__}: {exc}",
                finished_at=datetime.now(UTC),
                message="failed",
            )
            self._on_state(kind, "failed")
        else:
            self.store.update(
                job_id,
                state="succeeded",
                result=result,
                progress=1.0,
                finished_at=datetime.now(UTC),
                message="done",
            )
            self._on_state(kind, "succeeded")

    def wait(self, job_id: str, timeout: float | None = None) -> JobRecord | None:
        with self._lock:
            future = self._futures.get(job_id)
        if future is not None:
            future.result(timeout=timeout)
        return self.store.get(job_id)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
