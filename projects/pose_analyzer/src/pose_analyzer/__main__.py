"""``python -m pose_analyzer``: serve the API with uvicorn on the configured host and port."""

import uvicorn

from pose_analyzer.settings import PoseSettings


def main() -> None:
    settings = PoseSettings()
    uvicorn.run(
        "pose_analyzer.app:create_app", factory=True, host=settings.host, port=settings.port, log_config=None
    )


if __name__ == "__main__":
    main()
