"""A small GRU over per-rep angle series predicting pose_analyzer's rule-based form faults.

Supervision is the rules' verdicts only (see build_dataset.py): the model learns to reproduce
pose_analyzer's `FormScorer` from the angle series, nothing more. On the four clips of
tests/data/videos there are 16 reps and one fault, so this example shows the two services'
data path through the training kit; it is not a fault detector worth its numbers.

    python examples/pose_faults/build_dataset.py --out /tmp/pose_reps.npz
    python examples/pose_faults/train_pose_faults.py --data /tmp/pose_reps.npz
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from gpu_optimizer.training import TrainConfig, Trainer


class RepGRU(torch.nn.Module):
    def __init__(self, features: int, faults: int, hidden: int = 32) -> None:
        super().__init__()
        self.gru = torch.nn.GRU(features, hidden, batch_first=True)
        self.head = torch.nn.Linear(hidden, faults)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, last = self.gru(x)
        logits: torch.Tensor = self.head(last[-1])
        return logits


def loss_fn(model: torch.nn.Module, batch: Any) -> torch.Tensor:
    x, y = batch
    return torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)


def agreement(model: torch.nn.Module, batch: Any) -> dict[str, float]:
    """Share of (rep, fault) decisions equal to the rules', and of reps with every decision equal."""
    x, y = batch
    predicted = (model(x) > 0).float()
    return {
        "label_agreement": float((predicted == y).float().mean()),
        "rep_agreement": float((predicted == y).all(dim=1).float().mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help=".npz from build_dataset.py")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--run-name", default="pose-faults")
    parser.add_argument("--service-url")
    parser.add_argument("--checkpoint-dir", type=Path)
    args = parser.parse_args()
    data = np.load(args.data)
    x, y = torch.from_numpy(data["x"]), torch.from_numpy(data["y"])
    dataset = TensorDataset(x, y)
    batch = min(8, len(dataset))
    config = TrainConfig(
        run_name=args.run_name,
        max_steps=args.steps,
        global_batch_size=batch,
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_every_steps=50 if args.checkpoint_dir else None,
        service_url=args.service_url,
        log_every_steps=10,
    )
    torch.manual_seed(0)
    model = RepGRU(x.shape[2], y.shape[1])
    trainer = Trainer(
        config,
        model,
        lambda params: torch.optim.Adam(params, lr=1e-2),
        dataset,
        loss_fn,
        eval_set=dataset,  # 16 reps: there is nothing to hold out; this is agreement on the training reps
        eval_fn=agreement,
    )
    result = trainer.fit()
    print(
        json.dumps(
            {
                "reps": len(dataset),
                "fault_labels": int(y.sum()),
                "steps": result.steps,
                "train_label_agreement": round(result.eval["label_agreement"], 4),
                "train_rep_agreement": round(result.eval["rep_agreement"], 4),
                "supervision": "pose_analyzer rule verdicts only",
            }
        )
    )


if __name__ == "__main__":
    main()
