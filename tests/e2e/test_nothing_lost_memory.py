"""Memory is returned after streams end: a real pose service (MediaPipe, one graph per stream) comes
back within 150 MB (the issue's bound) of its resident size before 16 streams, after each of two
rounds of them; held here at half that, so the goal is met with margin.

Measured with these arguments: +139 and +130 MB with glibc's defaults.  With two arenas
(``streaming.memory.tune_allocator``) ``benchmarks/pose_rss.py`` gives +6, +10, +12 MB over
three rounds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ISSUE_BOUND_MB = 150.0
BOUND_MB = ISSUE_BOUND_MB / 2
ROUNDS = 2


def test_rss_returns_within_150_mb_after_each_round_of_16_streams(test_data: Path) -> None:
    assert (test_data / "multicam/videos/cam01.mp4").is_file()
    done = subprocess.run(
        [sys.executable, "benchmarks/pose_rss.py", "--rounds", str(ROUNDS), "--frames", "4", "--settle", "3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["streams"] == 16
    for n in range(1, ROUNDS + 1):
        # The streams really held memory (one graph each), and it came back.
        assert result[f"peak_{n}_mb"] > result["before_mb"] + 16 * 30, result
        assert result[f"growth_{n}_mb"] <= BOUND_MB, result
