"""Loss spikes: a step's loss far above the running median of the recent good steps."""

from __future__ import annotations

import math
import statistics
from collections import deque


class SpikeDetector:
    """Flags a loss above `factor` x the median of the last `window` accepted losses.

    Only accepted (non-spiking, finite) losses enter the window, so one spike does not raise the
    bar for the next. Nothing is flagged before `warmup` losses were seen. The history is part of
    the checkpointed state, so a resumed run flags exactly what the uninterrupted run would.
    """

    def __init__(self, factor: float, window: int, warmup: int) -> None:
        self.factor = factor
        self.history: deque[float] = deque(maxlen=window)
        self.warmup = warmup

    def median(self) -> float | None:
        return statistics.median(self.history) if self.history else None

    def is_spike(self, loss: float) -> bool:
        if not math.isfinite(loss) or len(self.history) < self.warmup:
            return False
        median = statistics.median(self.history)
        return loss > self.factor * abs(median) and loss - median > 1e-12

    def accept(self, loss: float) -> None:
        if math.isfinite(loss):
            self.history.append(loss)

    def state(self) -> list[float]:
        return list(self.history)

    def load(self, values: list[float]) -> None:
        self.history.clear()
        self.history.extend(float(v) for v in values)
