"""Which checkpoints to keep: the last N by step and the best K by one metric."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from gpu_optimizer.checkpoints.manifest import CheckpointInfo

Mode = Literal["min", "max"]


def select_kept(
    infos: Sequence[CheckpointInfo],
    keep_last: int | None,
    keep_best: int = 0,
    best_metric: str | None = None,
    mode: Mode = "min",
) -> set[str]:
    """Names of the checkpoints to keep; ``keep_last=None`` keeps everything.

    Ties in the metric go to the newer checkpoint. Checkpoints without the metric, or with a NaN or
    infinite value (a diverged run), rank last: they never count as best.
    """
    if keep_last is None:
        return {i.name for i in infos}
    by_age = sorted(infos, key=lambda i: (i.step, i.created_at))
    kept = {i.name for i in by_age[max(0, len(by_age) - keep_last) :]} if keep_last else set()
    if keep_best and best_metric:
        scored = [i for i in by_age if math.isfinite(i.metrics.get(best_metric, math.nan))]
        sign = 1.0 if mode == "min" else -1.0
        scored.sort(key=lambda i: (sign * i.metrics[best_metric], -i.step))
        kept |= {i.name for i in scored[:keep_best]}
    return kept
