"""The read-deadline WebSocket protocol's parameters (its behaviour against a real client that stops
reading is in tests/e2e/test_nothing_lost_slow_client.py)."""

from __future__ import annotations

import pytest

from pose_analyzer.ws_protocol import (
    MAX_PING_INTERVAL_S,
    ReadDeadlineProtocol,
    ping_interval,
    read_deadline_protocol,
)


def test_pings_go_out_four_times_per_deadline_and_at_least_every_second() -> None:
    assert ping_interval(1.0) == pytest.approx(0.25)
    assert ping_interval(5.0) == MAX_PING_INTERVAL_S == 1.0
    assert ping_interval(0.2) == pytest.approx(0.05)


def test_each_deadline_gets_its_own_protocol_class() -> None:
    two, five = read_deadline_protocol(2.0), read_deadline_protocol(5.0)
    assert issubclass(two, ReadDeadlineProtocol)
    assert (two.deadline_s, five.deadline_s) == (2.0, 5.0)


@pytest.mark.parametrize("deadline", [0.0, -1.0])
def test_a_deadline_that_is_not_positive_is_refused(deadline: float) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        read_deadline_protocol(deadline)
