"""The pose-fault example: rep samples built from pose_analyzer's own reports, trained by the kit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "pose_faults"))

import build_dataset  # noqa: E402


def test_rep_samples_carry_the_rules_verdicts_and_train(tmp_path: Path) -> None:
    clips = {"curl_3reps_starts_midrep.mp4": "biceps_curl"}
    data = build_dataset.build(clips, tmp_path / "work")
    report = json.loads((tmp_path / "work" / "curl_3reps_starts_midrep.analysis.json").read_text())
    reps = report["reps"]
    assert len(data["x"]) == len(reps) > 0
    codes = list(data["codes"])
    for label, rep in zip(data["y"], reps, strict=True):
        assert {codes[i] for i in np.flatnonzero(label)} == {f["code"] for f in rep["faults"]}
    left, right = (build_dataset.ANGLES.index(f"{side}_elbow") for side in ("left", "right"))
    mask = data["x"][:, :, len(build_dataset.ANGLES) :]
    # The curl's driver angle (an elbow, on the side the counter follows) is seen in every rep.
    assert np.maximum(mask[:, :, left], mask[:, :, right]).all()
    assert (data["x"][:, :, : len(build_dataset.ANGLES)] >= 0).all()

    npz = tmp_path / "reps.npz"
    np.savez(npz, **data)
    script = ROOT / "examples" / "pose_faults" / "train_pose_faults.py"
    done = subprocess.run(
        [sys.executable, str(script), "--data", str(npz), "--steps", "20"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["reps"] == len(reps)
    assert summary["steps"] == 20
    assert summary["supervision"] == "pose_analyzer rule verdicts only"
