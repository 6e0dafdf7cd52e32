"""Several cameras in one session: the session opened once, then every camera streamed at once.

Every stream carries the session id in its URL (``?session_id=``) and its ``start``, so a load
balancer that hashes the id sends all cameras of the session to one replica (multi-camera analysis
needs them together), and a camera that reconnects continues in the same session.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

from pose_analyzer.client.sources import FrameSource
from pose_analyzer.client.stats import StreamStats
from pose_analyzer.client.stream import ClientConfig, MessageHook, StreamClient, StreamFailedError


def http_url(ws_url: str) -> str:
    """The service's HTTP base URL for its WebSocket base URL (ws -> http, wss -> https)."""
    if ws_url.startswith("ws://"):
        return "http://" + ws_url[len("ws://") :]
    if ws_url.startswith("wss://"):
        return "https://" + ws_url[len("wss://") :]
    raise ValueError(f"the service URL must start with ws:// or wss://, got {ws_url!r}")


def open_session(config: ClientConfig, meta: dict[str, Any] | None = None) -> str:
    """Open a session on the service (``POST /api/sessions``); returns its id (blocking).

    Raises:
        StreamFailedError: the service refused or could not be reached.
    """
    body = json.dumps({"exercise": config.exercise, "meta": meta or {}}).encode()
    headers = {"Content-Type": "application/json", **config.headers()}
    request = urllib.request.Request(
        f"{http_url(config.url).rstrip('/')}/api/sessions", body, headers, method="POST"
    )
    try:
        with urllib.request.urlopen(
            request, timeout=config.open_timeout_s, context=config.ssl_context()
        ) as resp:
            return str(json.load(resp)["id"])
    except urllib.error.HTTPError as exc:
        raise StreamFailedError(
            f"the service refused to open a session: {exc.code} {exc.read()[:300]!r}"
        ) from exc
    except OSError as exc:
        raise StreamFailedError(f"cannot open a session at {config.url}: {exc}") from exc


class CameraSession:
    """Streams ``sources`` (stream id -> source) at once into one session (``session_id``, else a new one).

    ``failures`` maps each stream that ended with an error to its reason after ``run``.
    """

    def __init__(
        self,
        config: ClientConfig,
        sources: dict[str, FrameSource],
        session_id: str | None = None,
        on_message: MessageHook | None = None,
    ) -> None:
        if not sources:
            raise ValueError("a session needs at least one source")
        self.config = config
        self.session_id = session_id
        self.clients = {
            stream_id: StreamClient(config, stream_id, source, session_id, on_message)
            for stream_id, source in sources.items()
        }
        self.failures: dict[str, str] = {}

    @property
    def stats(self) -> dict[str, StreamStats]:
        return {stream_id: client.stats for stream_id, client in self.clients.items()}

    async def open(self) -> str:
        """The session's id, opening a new session on the service when none was given."""
        if self.session_id is None:
            meta = {"client": "pose-analyzer stream", "streams": sorted(self.clients)}
            self.session_id = await asyncio.to_thread(open_session, self.config, meta)
            for client in self.clients.values():
                client.session_id = self.session_id
        return self.session_id

    async def run(self, stop: asyncio.Event | None = None) -> dict[str, StreamStats]:
        """Stream every source until it ends or ``stop`` is set; a failed stream does not stop the others."""
        stop = stop or asyncio.Event()
        await self.open()
        names = list(self.clients)
        results = await asyncio.gather(*(self.clients[n].run(stop) for n in names), return_exceptions=True)
        for name, result in zip(names, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                self.failures[name] = str(result)
        return self.stats
