"""Sharded checkpoints of multi-process jobs through ``torch.distributed.checkpoint`` (DCP), in the
same atomic layout as single-process ones: ranks write into a temp dir, rank 0 fsyncs, renames it
into place and writes the manifest with every shard's hash (BLAKE3).

DCP stores its ``.metadata`` file with pickle; it is only ever read after rank 0 has verified every
file against the manifest we wrote, so no file we did not write is unpickled. All ranks must see
the same filesystem under the manager's root.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import torch.distributed as dist
from torch.distributed.checkpoint.state_dict_loader import load as dcp_load
from torch.distributed.checkpoint.state_dict_saver import save as dcp_save

from gpu_optimizer.checkpoints.atomic import TEMP_PREFIX, fsync_dir, fsync_file, remove_tree
from gpu_optimizer.checkpoints.errors import CheckpointCorruptError
from gpu_optimizer.checkpoints.manager import CheckpointManager
from gpu_optimizer.checkpoints.manifest import CheckpointInfo, library_versions, now_iso, write_manifest
from gpu_optimizer.checkpoints.tensorio import hash_file

KIND = "dcp"


def _broadcast(value: Any, group: dist.ProcessGroup | None) -> Any:
    box = [value]
    dist.broadcast_object_list(box, src=0, group=group)
    return box[0]


def save_sharded(
    manager: CheckpointManager,
    step: int,
    state_dict: dict[str, Any],
    *,
    metrics: Mapping[str, float] | None = None,
    epoch: int | None = None,
    config_digest: str | None = None,
    name: str | None = None,
    process_group: dist.ProcessGroup | None = None,
) -> CheckpointInfo:
    """Collective: every rank calls it with its (sharded) state dict.

    Returns:
        The checkpoint's manifest, on every rank, once rank 0 has made it durable.

    Raises:
        CheckpointExistsError, InvalidCheckpointNameError: on every rank, before anything is written.
    """
    rank = dist.get_rank(process_group)
    name = manager.reserve_name(step, name)
    token = _broadcast(uuid.uuid4().hex if rank == 0 else None, process_group)
    tmp = manager.run_dir / f"{TEMP_PREFIX}{name}-{token}"
    if rank == 0:
        tmp.mkdir()
    dist.barrier(group=process_group)
    dcp_save(state_dict, checkpoint_id=tmp, process_group=process_group)
    dist.barrier(group=process_group)
    if rank == 0:
        files = {}
        for file in sorted(tmp.iterdir()):
            fsync_file(file)
            files[file.name] = hash_file(file, manager.hash_algorithm)
        fsync_dir(tmp)
        final = manager.run_dir / name
        remove_tree(final)
        tmp.rename(final)
        fsync_dir(manager.run_dir)
        write_manifest(
            CheckpointInfo(
                name=name,
                path=final,
                step=step,
                epoch=epoch,
                metrics={k: float(v) for k, v in (metrics or {}).items()},
                created_at=now_iso(),
                config_digest=config_digest,
                files=files,
                components=(KIND,),
                kind=KIND,
                versions=library_versions(),
                extra={"world_size": dist.get_world_size(process_group)},
            )
        )
        manager.prune()
    dist.barrier(group=process_group)
    return manager.info(name)


def load_sharded(
    manager: CheckpointManager,
    name: str | CheckpointInfo,
    state_dict: dict[str, Any],
    *,
    process_group: dist.ProcessGroup | None = None,
) -> CheckpointInfo:
    """Collective: verify the checkpoint on rank 0, then load it in place into every rank's
    ``state_dict`` (DCP reshards when the layout differs).

    Raises:
        CheckpointCorruptError: on every rank, when a file does not verify or the checkpoint is not DCP.
    """
    info = manager.info(name.name if isinstance(name, CheckpointInfo) else name)
    if info.kind != KIND:
        raise CheckpointCorruptError(f"{info.name} is a {info.kind!r} checkpoint, not a sharded one")
    problem = None
    if dist.get_rank(process_group) == 0:
        result = manager.verify(info.name)
        problem = None if result.ok else f"mismatched={result.mismatched} missing={result.missing}"
    problem = _broadcast(problem, process_group)
    if problem:
        raise CheckpointCorruptError(f"{info.name}: files do not verify: {problem}")
    dcp_load(state_dict, checkpoint_id=info.path, process_group=process_group)
    return info
