"""``python -m pose_analyzer``: serve the API with uvicorn on the configured host and port.

The process is configured here, once, before the app is imported: the C heap (``tune_allocator``),
JSON logging (the lifespan does not touch the root logger) and the third-party libraries'
environment.
"""

import socket
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


class _Server(uvicorn.Server):
    """uvicorn's server, telling the app when a stop signal arrives (before it closes connections,
    so open streams are recorded as interrupted and closed with 1012 and a reason)."""

    def __init__(self, config: uvicorn.Config, notice: ShutdownNotice) -> None:
        super().__init__(config)
        self.notice = notice

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.notice.fire()
        super().handle_exit(sig, frame)


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
    )
    listener = config.bind_socket()
    if settings.socket_send_buffer_bytes:
        # Accepted connections inherit it: answers a client does not read back up within a few
        # hundred KiB, so the send timeout notices it (see the setting).
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, settings.socket_send_buffer_bytes)
    _Server(config, notice).run(sockets=[listener])


if __name__ == "__main__":
    main()
