"""Per-rep angle series and rule-based fault labels, made by pose_analyzer's own code.

For each clip, `pose-analyzer analyze` (MediaPipe) writes the per-frame joint angles of every
tracked person (`<clip>.angles.csv`) and the reps its counter found with the faults its
`FormScorer` rules gave them (`<clip>.analysis.json`). A sample is one rep: the angles of the
rep's person between its start and end time, resampled to `LENGTH` points (missing angles, e.g.
an occluded side, are carried over from the nearest seen value, else 0, with a mask channel).
The label is multi-hot over every fault code the exercise definitions know.

These labels are the rules' verdicts, nothing else: no person judged any rep. A model trained on
them can at best learn to reproduce the rules from the angle series.

    python examples/pose_faults/build_dataset.py --out /tmp/pose_reps.npz
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from pose_analyzer.exercises import available_exercises, load_exercise

REPO = Path(__file__).resolve().parents[2]
# The clips of tests/data/videos with the exercise each shows.
CLIPS = {
    "squat_8reps.mp4": "squat",
    "pushup_4reps.mp4": "push_up",
    "curl_3reps_starts_midrep.mp4": "biceps_curl",
    "bridging_1rep.mp4": "glute_bridge",
}
ANGLES = [
    "left_ankle",
    "left_elbow",
    "left_hip",
    "left_knee",
    "left_shoulder",
    "neck",
    "right_ankle",
    "right_elbow",
    "right_hip",
    "right_knee",
    "right_shoulder",
    "trunk_lean",
]
LENGTH = 32


def fault_codes() -> list[str]:
    """Every fault code of every exercise definition, sorted (the label vocabulary)."""
    return sorted({rule.code for name in available_exercises() for rule in load_exercise(name).rules})


def analyse(clip: Path, exercise: str, out: Path) -> tuple[Path, Path]:
    """Run pose_analyzer's CLI on one clip; the angles CSV and the analysis JSON it wrote."""
    cmd = [str(Path(sys.executable).with_name("pose-analyzer")), "analyze", str(clip), "--exercise", exercise]
    cmd += ["--backend", "mediapipe", "-o", str(out), "--no-overlay", "--no-plot"]
    subprocess.run(cmd, check=True, capture_output=True)
    return out / f"{clip.stem}.angles.csv", out / f"{clip.stem}.analysis.json"


def read_angles(path: Path) -> dict[int, dict[str, list[tuple[float, float]]]]:
    """track -> angle -> [(time, degrees)] (angles the engine could not measure are left out)."""
    series: dict[int, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            if row["degrees"] and row["track_id"]:
                series[int(row["track_id"])][row["angle"]].append((float(row["time"]), float(row["degrees"])))
    return series


def rep_sample(angles: dict[str, list[tuple[float, float]]], start: float, end: float) -> np.ndarray:
    """[LENGTH, 2 * len(ANGLES)]: degrees / 180 resampled over the rep, then a seen-mask per angle."""
    grid = np.linspace(start, end, LENGTH)
    out = np.zeros((LENGTH, 2 * len(ANGLES)), dtype=np.float32)
    for i, name in enumerate(ANGLES):
        points = [(t, d) for t, d in angles.get(name, []) if start <= t <= end]
        if len(points) < 2:
            continue
        times, degrees = np.array(points).T
        out[:, i] = np.interp(grid, times, degrees) / 180.0
        out[:, len(ANGLES) + i] = 1.0
    return out


def build(clips: dict[str, str], work: Path) -> dict[str, np.ndarray]:
    codes = fault_codes()
    xs, ys, names = [], [], []
    for clip, exercise in clips.items():
        angles_csv, analysis_json = analyse(REPO / "tests" / "data" / "videos" / clip, exercise, work)
        angles = read_angles(angles_csv)
        for rep in json.loads(analysis_json.read_text())["reps"]:
            xs.append(rep_sample(angles[rep["track_id"]], rep["start_s"], rep["end_s"]))
            label = np.zeros(len(codes), dtype=np.float32)
            for fault in rep["faults"]:
                label[codes.index(fault["code"])] = 1.0
            ys.append(label)
            names.append(f"{clip}#{rep['track_id']}.{rep['index']}")
    return {
        "x": np.stack(xs),
        "y": np.stack(ys),
        "reps": np.array(names),
        "codes": np.array(codes),
        "angles": np.array(ANGLES),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help=".npz file to write")
    parser.add_argument("--clips", nargs="*", choices=sorted(CLIPS), help="default: all four")
    args = parser.parse_args()
    clips = {c: CLIPS[c] for c in (args.clips or CLIPS)}
    with tempfile.TemporaryDirectory() as tmp:
        data = build(clips, Path(tmp))
    np.savez(args.out, **data)
    positives = {str(c): int(n) for c, n in zip(data["codes"], data["y"].sum(0), strict=True) if n}
    print(json.dumps({"reps": len(data["x"]), "faults": positives, "out": str(args.out)}))


if __name__ == "__main__":
    main()
