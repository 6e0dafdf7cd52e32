"""One Euro filter and keypoint gating."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pose_analyzer.keypoints import NUM_KEYPOINTS
from pose_analyzer.smoothing import KeypointSmoother, OneEuroFilter, SmoothingConfig


def _keypoints(x: float, y: float = 100.0, conf: float = 1.0) -> np.ndarray:
    """All keypoints on a 200-pixel-tall vertical line shifted by x (so the person scale is fixed)."""
    k = np.zeros((NUM_KEYPOINTS, 3), dtype=np.float32)
    k[:, 0] = x
    k[:, 1] = np.linspace(y, y + 200.0, NUM_KEYPOINTS)
    k[:, 2] = conf
    return k


def test_one_euro_reduces_jitter_and_follows_a_step() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(300) / 30.0
    truth = np.where(t < 5.0, 0.0, 100.0)
    noisy = truth + rng.normal(0.0, 2.0, t.size)
    f = OneEuroFilter(min_cutoff=0.5, beta=5.0)
    out = np.array([f.filter(np.array([v]), ti, scale=200.0)[0] for v, ti in zip(noisy, t, strict=True)])
    still = (t > 1.0) & (t < 5.0)
    assert np.std(out[still]) < 0.5 * np.std(noisy[still])
    # After the step it settles on the new level within half a second.
    settled = (t > 5.5) & (t < 10.0)
    assert np.abs(out[settled] - 100.0).max() < 5.0


def test_one_euro_filters_arrays_and_restarts_nan_signals() -> None:
    f = OneEuroFilter()
    f.filter(np.array([0.0, 0.0]), 0.0)
    out = f.filter(np.array([np.nan, 10.0]), 0.1)
    assert math.isnan(out[0])
    assert 0.0 < out[1] <= 10.0
    assert f.filter(np.array([50.0, 10.0]), 0.2)[0] == 50.0  # a reappearing signal starts where it is


def test_one_euro_rejects_bad_input() -> None:
    f = OneEuroFilter()
    f.filter(np.zeros(3), 1.0)
    with pytest.raises(ValueError, match="increase"):
        f.filter(np.zeros(3), 1.0)
    with pytest.raises(ValueError, match="shape"):
        f.filter(np.zeros(4), 2.0)


def test_low_confidence_keypoint_is_held_then_dropped() -> None:
    config = SmoothingConfig(max_hold_frames=2)
    s = KeypointSmoother(config)
    s.update(_keypoints(10.0), 0.0)
    held = [s.update(_keypoints(10.0, conf=0.1), (i + 1) / 30.0) for i in range(3)]
    assert held[0][0, 0] == pytest.approx(10.0)
    assert held[1][0, 0] == pytest.approx(10.0)
    assert math.isnan(held[2][0, 0])
    assert held[2][0, 2] == pytest.approx(0.1)  # the detector's confidence is reported unchanged
    back = s.update(_keypoints(40.0), 4 / 30.0)
    assert back[0, 0] == pytest.approx(40.0)  # restarted, not gliding in from the stale position


def test_a_keypoint_teleporting_is_treated_as_a_glitch() -> None:
    s = KeypointSmoother(SmoothingConfig(enabled=False))
    s.update(_keypoints(0.0), 0.0)
    glitch = _keypoints(0.0)
    glitch[9, 0] = 150.0  # a wrist jumping 150 px (0.75 body sizes) in one frame at 30 fps
    out = s.update(glitch, 1 / 30.0)
    assert out[9, 0] == pytest.approx(0.0)
    assert out[8, 0] == pytest.approx(0.0)


def test_disabled_smoothing_passes_values_through_but_still_gates() -> None:
    s = KeypointSmoother(SmoothingConfig(enabled=False))
    k = _keypoints(5.0)
    k[3, 2] = 0.2
    out = s.update(k, 0.0)
    np.testing.assert_allclose(out[0], k[0])
    assert math.isnan(out[3, 0])


def test_smoother_rejects_wrong_shapes_and_bad_config() -> None:
    with pytest.raises(ValueError, match="keypoints must be"):
        KeypointSmoother().update(np.zeros((17, 3), dtype=np.float32), 0.0)
    with pytest.raises(ValueError, match="min_confidence"):
        SmoothingConfig(min_confidence=1.5)
    with pytest.raises(ValueError, match="positive"):
        SmoothingConfig(min_cutoff=0.0)


def test_time_going_backwards_restarts_instead_of_failing() -> None:
    s = KeypointSmoother()
    s.update(_keypoints(0.0), 5.0)
    s.update(_keypoints(1.0), 5.1)
    out = s.update(_keypoints(80.0), 0.0)  # the stream restarted
    assert out[0, 0] == pytest.approx(80.0)
