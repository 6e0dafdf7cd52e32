"""A small convolutional classifier on scikit-learn's digits (8x8 images, 10 classes), through the kit.

The data ships inside scikit-learn (no download). One process:

    python examples/digits/train_digits.py --service-url http://localhost:8002

Two workers with torchrun (DDP; `--strategy fsdp` for FSDP2), restarted up to 3 times:

    gpu-optimizer train examples/digits/train_digits.py --nproc-per-node 2 -- --checkpoint-dir /tmp/digits

The last line printed (rank 0) is one JSON object with the test accuracy.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import TensorDataset

from gpu_optimizer.training import TrainConfig, Trainer, init_distributed


def datasets(seed: int) -> tuple[TensorDataset, TensorDataset]:
    """80/20 stratified split of the 1797 digits, pixels scaled to [0, 1]."""
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)

    def tensors(xs: np.ndarray, ys: np.ndarray) -> TensorDataset:
        images = torch.tensor(xs, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
        return TensorDataset(images, torch.tensor(ys, dtype=torch.long))

    return tensors(x_train, y_train), tensors(x_test, y_test)


def build_model() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),  # 4x4
        torch.nn.Conv2d(16, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),  # 2x2
        torch.nn.Flatten(),
        torch.nn.Dropout(0.2),
        torch.nn.Linear(32 * 2 * 2, 10),
    )


def loss_fn(model: torch.nn.Module, batch: Any) -> torch.Tensor:
    images, labels = batch
    return torch.nn.functional.cross_entropy(model(images), labels)


def accuracy(model: torch.nn.Module, batch: Any) -> dict[str, float]:
    images, labels = batch
    logits = model(images)
    return {
        "accuracy": float((logits.argmax(dim=1) == labels).float().mean()),
        "loss": float(torch.nn.functional.cross_entropy(logits.float(), labels)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=64, help="global batch (all ranks together)")
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-name", default="digits")
    parser.add_argument("--checkpoint-dir", type=Path)
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--log", type=Path, help="JSON-line log of the run")
    parser.add_argument("--service-url", help="gpu_optimizer service to report progress to")
    parser.add_argument("--strategy", choices=["ddp", "fsdp"], default="ddp")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    parser.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when there is one")
    args = parser.parse_args()

    ctx = init_distributed(args.device)
    if ctx.device.type == "cpu":
        torch.set_num_threads(max(1, torch.get_num_threads() // max(1, ctx.world)))
    train_set, test_set = datasets(args.seed)
    torch.manual_seed(args.seed)
    config = TrainConfig(
        run_name=args.run_name,
        max_steps=args.steps,
        global_batch_size=args.batch,
        seed=args.seed,
        precision=args.precision,
        grad_clip_norm=5.0,
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_every_steps=args.checkpoint_every if args.checkpoint_dir else None,
        eval_every_steps=None,
        log_every_steps=10,
        log_path=args.log,
        service_url=args.service_url,
        strategy=args.strategy,
    )
    started = time.perf_counter()
    trainer = Trainer(
        config,
        build_model(),
        lambda params: torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-4),
        train_set,
        loss_fn,
        scheduler_factory=lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.steps),
        eval_set=test_set,
        eval_fn=accuracy,
        ctx=ctx,
    )
    result = trainer.fit()
    if ctx.is_main:
        summary = {
            "run": args.run_name,
            "steps": result.steps,
            "test_accuracy": round(result.eval["accuracy"], 4),
            "test_loss": round(result.eval["loss"], 4),
            "seconds": round(time.perf_counter() - started, 2),
            "world_size": ctx.world,
            "resumed_from": result.resumed_from,
        }
        print(json.dumps(summary))
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
