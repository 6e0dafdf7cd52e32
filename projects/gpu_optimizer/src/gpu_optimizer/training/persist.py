"""Everything a resumed run needs, saved and loaded through CheckpointManager.

One process: `CheckpointManager.save_async` (host copy now, atomic hashed write in a thread) with
the model, optimizer and scheduler; the manager captures this process's RNG states itself and the
kit's own state (data position, micro-batch, grad scaler, spike history, LR scale) rides in
`extra`. Several processes: one DCP checkpoint through `save_sharded` holding the model and
optimizer state from `get_state_dict` (DDP and FSDP2 alike), every rank's RNG states under
rank-named keys, and the kit state as a JSON blob; loading picks the newest checkpoint whose
hashes verify, on every rank.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from gpu_optimizer.checkpoints import CheckpointCorruptError, CheckpointManager
from gpu_optimizer.checkpoints.sharded import load_sharded, save_sharded
from gpu_optimizer.training.config import TrainConfig
from gpu_optimizer.training.distributed import DistContext

log = logging.getLogger("gpu_optimizer.training")

# The kit state is JSON in a fixed-size byte tensor: DCP loads into tensors of known shape.
META_BYTES = 256 * 1024


def _encode(meta: dict[str, Any]) -> torch.Tensor:
    raw = json.dumps(meta).encode()
    if len(raw) + 8 > META_BYTES:
        raise ValueError(f"training state of {len(raw)} bytes exceeds {META_BYTES}")
    out = torch.zeros(META_BYTES, dtype=torch.uint8)
    out[:8] = torch.tensor(list(len(raw).to_bytes(8, "little")), dtype=torch.uint8)
    out[8 : 8 + len(raw)] = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
    return out


def _decode(blob: torch.Tensor) -> dict[str, Any]:
    data = bytes(blob.to(torch.uint8).tolist())
    size = int.from_bytes(data[:8], "little")
    meta: dict[str, Any] = json.loads(data[8 : 8 + size])
    return meta


def _rng_tensors(prefix: str) -> dict[str, torch.Tensor]:
    """This process's RNG states as fixed-shape tensors (no pickle)."""
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = cast(tuple[str, Any, int, int, float], np.random.get_state())
    out = {
        f"{prefix}/python": torch.tensor([version, *mt], dtype=torch.int64),
        f"{prefix}/python_gauss": torch.tensor([gauss is not None, gauss or 0.0], dtype=torch.float64),
        f"{prefix}/numpy": torch.tensor([*keys.tolist(), pos, has_gauss], dtype=torch.int64),
        f"{prefix}/numpy_gauss": torch.tensor([cached], dtype=torch.float64),
        f"{prefix}/torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        out[f"{prefix}/cuda"] = torch.cuda.get_rng_state()
    assert name == "MT19937"
    return out


def _restore_rng_tensors(state: dict[str, torch.Tensor], prefix: str) -> None:
    py = state[f"{prefix}/python"].tolist()
    has_gauss, gauss = state[f"{prefix}/python_gauss"].tolist()
    random.setstate((int(py[0]), tuple(int(v) for v in py[1:]), gauss if has_gauss else None))
    npy = state[f"{prefix}/numpy"].tolist()
    keys = np.array(npy[:624], dtype=np.uint32)
    cached = float(state[f"{prefix}/numpy_gauss"][0])
    np.random.set_state(("MT19937", keys, int(npy[624]), int(npy[625]), cached))
    torch.set_rng_state(state[f"{prefix}/torch"].clone())
    if f"{prefix}/cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state[f"{prefix}/cuda"].clone())


class Persistence:
    """Saves and restores model, optimizer, scheduler, RNG and the kit state of one run."""

    def __init__(
        self,
        root: Path,
        run: str,
        keep_last: int,
        ctx: DistContext,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        digest: str,
    ) -> None:
        self.manager = CheckpointManager(root, run, keep_last=keep_last)
        self.ctx, self.model, self.optimizer, self.scheduler, self.digest = (
            ctx,
            model,
            optimizer,
            scheduler,
            digest,
        )
        if ctx.distributed:
            torch.distributed.barrier()  # every rank has cleaned stale temp dirs before anyone saves

    @classmethod
    def of_run(
        cls,
        config: TrainConfig,
        ctx: DistContext,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
    ) -> Persistence | None:
        """The run's persistence, or None when the config names no checkpoint folder."""
        if config.checkpoint_dir is None:
            return None
        return cls(
            config.checkpoint_dir,
            config.run_name,
            config.keep_last,
            ctx,
            model,
            optimizer,
            scheduler,
            config.digest,
        )

    def save(self, step: int, meta: dict[str, Any], metrics: dict[str, float]) -> None:
        if not self.ctx.distributed:
            self.manager.save_async(
                step,
                self.model,
                self.optimizer,
                self.scheduler,
                metrics=metrics,
                config_digest=self.digest,
                extra={"kit": json.dumps(meta)},
            )
            return
        meta = {**meta, "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None}
        msd, osd = get_state_dict(self.model, self.optimizer)
        state: dict[str, Any] = {"model": msd, "optim": osd, "kit": _encode(meta)}
        state.update(_rng_tensors(f"rng/{self.ctx.rank}"))
        save_sharded(self.manager, step, state, metrics=metrics, config_digest=self.digest)

    def wait(self) -> None:
        self.manager.wait()

    def busy(self) -> bool:
        """Whether a checkpoint is still being written in the background."""
        return self.manager.busy()

    def latest_step(self) -> int | None:
        infos = self.manager.list()
        return infos[-1].step if infos else None

    def load_latest(self) -> dict[str, Any] | None:
        """Load the newest checkpoint that verifies (skipping corrupt ones); its kit state, or None."""
        if not self.ctx.distributed:
            info = self.manager.resume_latest(self.model, self.optimizer, self.scheduler)
            if info is None:
                return None
            extra = self.manager.read_component(info, "extra")
            meta: dict[str, Any] = json.loads(extra["kit"])
            return meta
        for info in reversed(self.manager.list()):
            try:
                return self._load_sharded(info)
            except CheckpointCorruptError as exc:
                log.warning("skipping checkpoint %s: %s", info.name, exc)
        return None

    def _load_sharded(self, info: Any) -> dict[str, Any]:
        msd, osd = get_state_dict(self.model, self.optimizer)
        state: dict[str, Any] = {
            "model": msd,
            "optim": osd,
            "kit": torch.zeros(META_BYTES, dtype=torch.uint8),
        }
        same_world = info.extra.get("world_size") == self.ctx.world
        prefix = f"rng/{self.ctx.rank}"
        if same_world:
            state.update({k: v.clone() for k, v in _rng_tensors(prefix).items()})
        load_sharded(self.manager, info, state)
        set_state_dict(
            self.model, self.optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"]
        )
        meta = _decode(state["kit"])
        if self.scheduler is not None and meta.get("scheduler") is not None:
            self.scheduler.load_state_dict(meta["scheduler"])
        if same_world:
            _restore_rng_tensors(state, prefix)
        else:
            # A different world size (elastic resize): the data order is global and unaffected;
            # only dropout-like randomness restarts, from a rank-specific seed.
            torch.manual_seed(int(meta["step"]) * 7919 + self.ctx.rank)
        meta["_checkpoint"] = info.name
        return meta
