"""Progress of a run sent to the gpu_optimizer service (`PUT /api/runs/{name}`), off the loop.

A background thread sends the newest report only (older unsent ones are superseded), so a slow
or absent service never slows training; failures are logged once and retried with the next one.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from typing import Any

log = logging.getLogger("gpu_optimizer.training")


class RunReporter:
    def __init__(self, base_url: str, run: str, api_key: str | None = None, timeout_s: float = 2.0) -> None:
        self._headers = {"Content-Type": "application/json", **({"X-API-Key": api_key} if api_key else {})}
        self._url = f"{base_url.rstrip('/')}/api/runs/{run}"
        self._timeout = timeout_s
        self._pending: dict[str, Any] | None = None
        self._cond = threading.Condition()
        self._closing = False
        self._warned = False
        self.sent = 0
        self._thread = threading.Thread(target=self._loop, name="run-reporter", daemon=True)
        self._thread.start()

    def report(self, payload: dict[str, Any]) -> None:
        with self._cond:
            self._pending = payload
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closing:
                    self._cond.wait()
                payload, self._pending = self._pending, None
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
