"""``python -m pose_analyzer``: serve the API with uvicorn on the configured host and port."""

import uvicorn

from pose_analyzer.settings import PoseSettings

# uvicorn closes WebSocket messages above ws_max_size itself (1009) before the service sees them; let
# messages up to 4x the frame limit through so the service closes them with a reason and counts them.
WS_HEADROOM = 4


def main() -> None:
    settings = PoseSettings()
    uvicorn.run(
        "pose_analyzer.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        log_config=None,
        ws_max_size=max(16 * 1024 * 1024, WS_HEADROOM * settings.max_frame_bytes),
    )


if __name__ == "__main__":
    main()
