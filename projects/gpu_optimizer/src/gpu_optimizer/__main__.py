"""``python -m gpu_optimizer``: serve the API with uvicorn on the configured host and port."""

import uvicorn

from gpu_optimizer.settings import GpuOptSettings
from service_kit.settings import load_settings


def main() -> None:
    settings = load_settings(GpuOptSettings)
    uvicorn.run(
        "gpu_optimizer.app:create_app", factory=True, host=settings.host, port=settings.port, log_config=None
    )


if __name__ == "__main__":
    main()
