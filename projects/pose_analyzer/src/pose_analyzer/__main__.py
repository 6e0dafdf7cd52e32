"""``python -m pose_analyzer``: serve the API with uvicorn on the configured host and port.

The process is configured here, once, before the app is imported: the C heap (``tune_allocator``),
JSON logging (the lifespan does not touch the root logger) and the third-party libraries'
environment.
"""

import math
import socket
import time
from types import FrameType

import uvicorn

from pose_analyzer.settings import PoseSettings
from pose_analyzer.shutdown import ShutdownNotice
from pose_analyzer.streaming.memory import tune_allocator
from pose_analyzer.ws_protocol import read_deadline_protocol
from service_kit.jsonlog import configure_logging
from service_kit.settings import config_digest, load_settings
from service_kit.thirdparty import configure_ultralytics

SERVICE = "pose_analyzer"

# uvicorn closes WebSocket messages above ws_max_size itself (1009) before the service sees them; let
# messages up to 4x the frame limit (at least 64 MiB) through so the service closes them with its
# reason and counts them.
WS_HEADROOM = 4
WS_MIN_MAX_SIZE = 64 * 1024 * 1024
# No permessage-deflate: frames are JPEG/PNG (incompressible), so compressing them costs the client
# and inflating them costs the service CPU per frame (about a third of two cores at 4 x 30 fps)
# for no gain; browsers and the websockets client offer it by default, so the server declines.
WS_PER_MESSAGE_DEFLATE = False


# After a stop signal the server waits for the app to drain (streams get ``drain_grace_s`` to end,
# then those left are closed and their ends committed); this long beyond the grace it stops anyway
# (a commit stuck on the database), and uvicorn's own graceful shutdown, which follows the drain,
# gets as long again for the last requests.  The process exits within drain_grace_s + 2 x this.
DRAIN_CLOSE_S = 15


class _Server(uvicorn.Server):
    """uvicorn's server, draining on the first stop signal (SIGTERM, SIGINT) before it shuts down.

    uvicorn's own shutdown closes every connection at once (WebSockets with 1012 and no reason),
    so the first signal only tells the app (``ShutdownNotice``), which drains while the server
    still answers (``/readyz`` 503 for the balancer, new streams refused with 1013); once the app
    marked the notice drained, or ``drain_limit_s`` passed, the server shuts down as uvicorn does.
    A second signal stops at once.
    """

    def __init__(self, config: uvicorn.Config, notice: ShutdownNotice, drain_limit_s: float) -> None:
        super().__init__(config)
        self.notice = notice
        self.drain_limit_s = drain_limit_s
        self._stop_signal: int | None = None
        self._drain_deadline = 0.0

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._stop_signal is None and not self.should_exit:
            self._stop_signal = sig
            self._drain_deadline = time.monotonic() + self.drain_limit_s
            self.notice.fire()
            return
        super().handle_exit(sig, frame)

    def _drained(self) -> bool:
        return self.notice.drained.is_set() or time.monotonic() > self._drain_deadline

    async def on_tick(self, counter: int) -> bool:
        if self._stop_signal is not None and not self.should_exit and self._drained():
            super().handle_exit(self._stop_signal, None)
        return await super().on_tick(counter)


def main() -> None:
    tune_allocator()  # before threads allocate: what ended streams free can go back to the OS
    settings = load_settings(PoseSettings)
    configure_logging(SERVICE, settings.log_level, settings.log_dir, config_digest(settings))
    configure_ultralytics(settings.cache_dir)
    from pose_analyzer.app import create_app  # imported once the environment above is set

    notice = ShutdownNotice()
    config = uvicorn.Config(
        create_app(settings, shutdown=notice, freeze_gc=True),
        host=settings.host,
        port=settings.port,
        log_config=None,
        ws_max_size=max(WS_MIN_MAX_SIZE, WS_HEADROOM * settings.max_frame_bytes),
        ws_per_message_deflate=WS_PER_MESSAGE_DEFLATE,
        # Pings behind the answers with a pong deadline of the send timeout (see ws_protocol).
        ws=read_deadline_protocol(settings.stream_send_timeout_s),
        timeout_graceful_shutdown=DRAIN_CLOSE_S,
    )
    listener = config.bind_socket()
    if settings.socket_send_buffer_bytes:
        # Accepted connections inherit it: answers a client does not read back up within a few
        # hundred KiB, so the send timeout notices it (see the setting).
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, settings.socket_send_buffer_bytes)
    drain_limit_s = math.ceil(settings.drain_grace_s) + DRAIN_CLOSE_S
    _Server(config, notice, drain_limit_s).run(sockets=[listener])


if __name__ == "__main__":
    main()
