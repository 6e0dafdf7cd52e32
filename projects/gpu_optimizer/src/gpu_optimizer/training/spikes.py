"""Loss spikes: a step's loss far above the running median of the recent good steps."""

from __future__ import annotations

import bisect
import math
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
        self._sorted: list[float] = []  # the history in order: the median without a sort per step
        self.warmup = warmup

    def median(self) -> float | None:
        """statistics.median of the history (the mean of the middle two for an even count)."""
        n = len(self._sorted)
        if not n:
            return None
        mid = n // 2
        return self._sorted[mid] if n % 2 else (self._sorted[mid - 1] + self._sorted[mid]) / 2

    def is_spike(self, loss: float) -> bool:
        median = self.median()
        if not math.isfinite(loss) or median is None or len(self.history) < self.warmup:
            return False
        return loss > self.factor * abs(median) and loss - median > 1e-12

    def accept(self, loss: float) -> None:
        if math.isfinite(loss):
            if len(self.history) == self.history.maxlen:
                del self._sorted[bisect.bisect_left(self._sorted, self.history[0])]
            self.history.append(loss)
            bisect.insort(self._sorted, loss)

    def state(self) -> list[float]:
        return list(self.history)

    def load(self, values: list[float]) -> None:
        self.history.clear()
        self.history.extend(float(v) for v in values)
        self._sorted = sorted(self.history)
