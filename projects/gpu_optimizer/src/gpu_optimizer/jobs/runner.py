"""Run jobs on worker threads behind a bounded queue, recording state, progress and results.

The queue is bounded so that a burst of submissions cannot pile up work (and delay every later
job) without limit: ``submit`` raises ``QueueFullError`` instead, with a hint of when to retry.
A job's ``error`` field is written for the client: the exception's text goes to the log only.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from gpu_optimizer.jobs.store import JobRecord, JobStore

log = logging.getLogger(__name__)

# Assumed duration of a job before any has finished, and the bounds of the Retry-After hint.
_FIRST_GUESS_S = 5.0
_RETRY_AFTER_MIN_S, _RETRY_AFTER_MAX_S = 1, 600


class JobContext:
    """Handed to a job function so it can report progress."""

    def __init__(self, store: JobStore, job_id: str) -> None:
        self._store = store
        self.job_id = job_id

    def progress(self, fraction: float, message: str = "") -> None:
        self._store.update(self.job_id, progress=max(0.0, min(1.0, fraction)), message=message)


class JobFailure(Exception):
    """Raised by a job function for a failure the client should read about in the job's ``error``.

    Its message must be written for the client (no paths, no internals); any other exception
    is reported to the client as a generic failure naming the job id.
    """


class QueueFullError(Exception):
    """The queue holds ``max_queued`` jobs waiting to start; ``retry_after_s`` estimates when one frees."""

    def __init__(self, max_queued: int, retry_after_s: int) -> None:
        super().__init__(f"{max_queued} jobs are already waiting; retry in about {retry_after_s} s")
        self.max_queued = max_queued
        self.retry_after_s = retry_after_s


JobFunction = Callable[[dict[str, Any], JobContext], dict[str, Any]]


class JobRunner:
    """Executes submitted jobs on ``workers`` threads (one by default: GPU jobs should not overlap).

    At most ``max_queued`` jobs wait for a worker at any time (running ones not counted).
    """

    def __init__(
        self,
        store: JobStore,
        workers: int = 1,
        on_state: Callable[[str, str], None] | None = None,
        max_queued: int = 16,
    ) -> None:
        if workers < 1 or max_queued < 1:
            raise ValueError("workers and max_queued must be at least 1")
        self.store = store
        self.workers = workers
        self.max_queued = max_queued
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="job")
        self._futures: dict[str, Future[None]] = {}
        self._lock = threading.Lock()
        self._waiting = 0
        self._mean_duration_s = _FIRST_GUESS_S
        self._on_state = on_state or (lambda kind, state: None)

    @property
    def waiting(self) -> int:
        """Jobs accepted and not yet started."""
        with self._lock:
            return self._waiting

    def submit(self, kind: str, params: dict[str, Any], fn: JobFunction) -> JobRecord:
        """Queue a job; raises ``QueueFullError`` when ``max_queued`` jobs already wait."""
        with self._lock:
            if self._waiting >= self.max_queued:
                raise QueueFullError(self.max_queued, self._retry_after_locked())
            self._waiting += 1
        try:
            record = self.store.create(kind, params)
        except BaseException:
            with self._lock:
                self._waiting -= 1
            raise
        self._on_state(kind, "queued")
        with self._lock:
            future = self._pool.submit(self._run, record.id, kind, params, fn)
            self._futures[record.id] = future
        future.add_done_callback(lambda _: self._forget(record.id))
        return record

    def _retry_after_locked(self) -> int:
        """Seconds until a queue place is likely free: the next job to start waits for a running one."""
        estimate = self._mean_duration_s / self.workers
        return max(_RETRY_AFTER_MIN_S, min(_RETRY_AFTER_MAX_S, math.ceil(estimate)))

    def _forget(self, job_id: str) -> None:
        with self._lock:
            self._futures.pop(job_id, None)

    def _run(self, job_id: str, kind: str, params: dict[str, Any], fn: JobFunction) -> None:
        with self._lock:
            self._waiting -= 1
        started = time.monotonic()
        self.store.update(job_id, state="running", started_at=datetime.now(UTC), message="running")
        self._on_state(kind, "running")
        try:
            result = fn(params, JobContext(self.store, job_id))
        except Exception as exc:  # the job's failure is its result, not the service's
            log.warning("job failed", exc_info=True, extra={"job_id": job_id, "kind": kind})
            message = str(exc) if isinstance(exc, JobFailure) else f"the job failed (job id {job_id})"
            self.store.update(
                job_id, state="failed", error=message, finished_at=datetime.now(UTC), message="failed"
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
        with self._lock:
            self._mean_duration_s = 0.8 * self._mean_duration_s + 0.2 * (time.monotonic() - started)

    def wait(self, job_id: str, timeout: float | None = None) -> JobRecord | None:
        with self._lock:
            future = self._futures.get(job_id)
        if future is not None:
            future.result(timeout=timeout)
        return self.store.get(job_id)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
