"""Progress of a run sent to the gpu_optimizer service (`PUT /api/runs/{name}`), off the loop.

A background thread sends the newest report only (older unsent ones are superseded), so a slow
or absent service never slows training; failures are logged once and retried with the next one.
A report is superseded only by one of the same status, so the service hears every change of
status: a run that finishes while its `running` report waits is still reported running first.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from typing import Any

from gpu_optimizer.training.logs import clean_json

log = logging.getLogger("gpu_optimizer.training")


class RunReporter:
    def __init__(self, base_url: str, run: str, api_key: str | None = None, timeout_s: float = 2.0) -> None:
        self._headers = {"Content-Type": "application/json", **({"X-API-Key": api_key} if api_key else {})}
        self._url = f"{base_url.rstrip('/')}/api/runs/{run}"
        self._timeout = timeout_s
        self._pending: list[dict[str, Any]] = []  # unsent, one per change of status
        self._cond = threading.Condition()
        self._closing = False
        self._warned = False
        self.sent = 0
        self._thread = threading.Thread(target=self._loop, name="run-reporter", daemon=True)
        self._thread.start()

    def report(self, payload: dict[str, Any]) -> None:
        with self._cond:
            if self._pending and self._pending[-1].get("status") == payload.get("status"):
                self._pending[-1] = payload
            else:
                self._pending.append(payload)
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                payload = self._pending.pop(0) if self._pending else None
                closing = self._closing
            if payload is not None:
                self._send(payload)
            if closing and payload is None:
                return

    def _send(self, payload: dict[str, Any]) -> None:
        request = urllib.request.Request(self._url, json.dumps(payload).encode(), self._headers, method="PUT")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout):
                self.sent += 1
        except (urllib.error.URLError, OSError) as exc:
            if not self._warned:
                log.warning("could not report run progress to the service: %s", exc)
                self._warned = True

    def close(self) -> None:
        """Send what is pending, then stop."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout=10)

    def report_progress(
        self,
        status: str,
        record: dict[str, Any],
        *,
        samples_per_s: float,
        max_steps: int,
        restarts: int,
        world_size: int,
        config_digest: str,
        eval_metrics: dict[str, float],
    ) -> None:
        """Send one progress line of the run's log (`record`) with the run's context."""
        self.report(
            clean_json(
                {
                    "status": status,
                    "step": record["step"],
                    "max_steps": max_steps,
                    "loss": record["loss"],
                    "samples_per_s": samples_per_s,
                    "oom_events": record["ooms"],
                    "rollbacks": record["rollbacks"],
                    "restarts": restarts,
                    "world_size": world_size,
                    "micro_batch": record["micro_batch"],
                    "config_digest": config_digest,
                    "eval": eval_metrics,
                }
            )
        )
