"""The human-readable table (stdout) and the one JSON line of a run."""

from __future__ import annotations

import math
from typing import Any

GOAL_RATIO_N4 = 0.9
GOAL_DRIFT = 1.2


def json_number(value: float, digits: int) -> float | None:
    """``value`` rounded, or None (JSON null) when it is not finite."""
    return round(value, digits) if math.isfinite(value) else None


def per_client_count(
    runs: dict[int, dict[str, float]], bare: dict[int, float], bare_cores: dict[int, float]
) -> dict[str, Any]:
    """Print the table and return the JSON fields of every client count (``fps_N`` and the rest)."""
    print(
        f"\n{'N':>3} {'sent':>6} {'answered':>8} {'fps':>7} {'bare':>6} {'vs bare':>7} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'drop':>6} {'drift':>6} {'send ms':>7}"
    )
    result: dict[str, Any] = {}
    for n, r in runs.items():
        ratio = r["fps"] / bare[n] if bare[n] else float("nan")
        print(
            f"{n:>3} {int(r['sent']):>6} {int(r['answered']):>8} {r['fps']:>7.1f} {bare[n]:>6.1f} "
            f"{ratio:>7.2f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['drop_rate']:>6.3f} "
            f"{r['latency_drift']:>6.2f} {r['send_ms']:>7.1f}"
        )
        result.update(
            {
                f"fps_{n}": json_number(r["fps"], 2),
                # Below 30 * N when the clients themselves lack CPU time on a busy machine.
                f"sent_fps_{n}": json_number(r["sent_fps"], 2),
                f"send_ms_{n}": json_number(r["send_ms"], 2),
                f"bare_fps_{n}": round(bare[n], 2),
                f"service_vs_bare_{n}": json_number(ratio, 3),
                f"bare_fps_cores_{n}": round(bare_cores[n], 2),
                f"service_vs_cores_{n}": json_number(
                    r["fps"] / bare_cores[n] if bare_cores[n] else math.nan, 3
                ),
                f"p50_ms_{n}": json_number(r["p50_ms"], 1),
                f"p99_ms_{n}": json_number(r["p99_ms"], 1),
                f"p99_ms_steady_{n}": json_number(r["p99_ms_steady"], 1),
                f"drop_rate_{n}": json_number(r["drop_rate"], 4),
                f"latency_drift_{n}": json_number(r["latency_drift"], 3),
            }
        )
    return result


def goal_met_n4(result: dict[str, Any]) -> bool:
    """N=4 reached ``GOAL_RATIO_N4`` of the bare loop with a drift of at most ``GOAL_DRIFT``."""
    ratio4, drift4 = result["service_vs_bare_4"], result["latency_drift_4"]
    if ratio4 is None or drift4 is None:
        return False
    return bool(ratio4 >= GOAL_RATIO_N4 and drift4 <= GOAL_DRIFT)
