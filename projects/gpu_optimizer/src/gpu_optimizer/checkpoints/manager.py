"""CheckpointManager: atomic, verified, retained training checkpoints in ``root/run/name/``.

Layout of one checkpoint directory: one safetensors file per component (``model``, ``optimizer``,
``scheduler``, ``rng``, ``extra``) whose ``__metadata__`` holds the JSON skeleton of the non-tensor
state, and ``MANIFEST.json``, written last, with the metadata block and every file's BLAKE3 hash
(SHA-256 in checkpoints of format 1, which are still read).
"""

from __future__ import annotations

import builtins
import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from gpu_optimizer.checkpoints import hashing
from gpu_optimizer.checkpoints.atomic import clean_stale
from gpu_optimizer.checkpoints.catalog import prune_run, scan_run
from gpu_optimizer.checkpoints.components import (
    Snapshot,
    Stateful,
    read_component_file,
    snapshot_state,
    write_components,
)
from gpu_optimizer.checkpoints.deleter import BackgroundDeleter
from gpu_optimizer.checkpoints.errors import (
    CheckpointCorruptError,
    CheckpointError,
    CheckpointExistsError,
    CheckpointNotFoundError,
)
from gpu_optimizer.checkpoints.manifest import (
    CheckpointInfo,
    VerifyResult,
    library_versions,
    now_iso,
    read_manifest,
    verify_files,
    write_manifest,
)
from gpu_optimizer.checkpoints.names import validate_name
from gpu_optimizer.checkpoints.paths import check_contained, is_real_dir
from gpu_optimizer.checkpoints.priority import lower_current_thread_priority
from gpu_optimizer.checkpoints.retention import Mode
from gpu_optimizer.checkpoints.rng import restore_rng as _restore_rng
from gpu_optimizer.checkpoints.statetree import host_copy, move_to, to_cpu

log = logging.getLogger(__name__)

# Component files are read concurrently, each hashed in its own thread beside the read, so several
# files (model, optimizer moments) keep both cores busy.
_READ_WORKERS = 4


class CheckpointManager:
    """Save, verify, list, prune and resume the checkpoints of one training run.

    One manager (one process) writes a run at a time. Stale temp dirs from interrupted saves are
    removed when the manager opens the run. The run directory must be a real directory under the
    root (a symbolic link there is refused). The manager owns the thread that deletes pruned
    checkpoints: :meth:`close` (or leaving a ``with`` block) finishes its work and stops it; a
    manager nobody closes keeps no idle thread.
    """

    def __init__(
        self,
        root: Path,
        run: str,
        keep_last: int | None = 3,
        keep_best: int = 0,
        best_metric: str | None = None,
        mode: Mode = "min",
        *,
        hash_algorithm: str = hashing.DEFAULT,
    ) -> None:
        """Open (or create) ``root/run``.

        ``hash_algorithm`` hashes the files of new checkpoints: ``blake3`` (default) or ``sha256``;
        every algorithm is read whatever this says.

        Raises:
            ValueError: an inconsistent retention policy or an unknown hash algorithm.
            InvalidCheckpointNameError: an unsafe run name.
            UnsafePathError: the run directory is a symbolic link.
        """
        if hash_algorithm not in hashing.ALGORITHMS:
            raise ValueError(f"hash_algorithm must be one of {hashing.ALGORITHMS}, got {hash_algorithm!r}")
        self.hash_algorithm = hash_algorithm
        if (keep_last is not None and keep_last < 0) or keep_best < 0:
            raise ValueError("keep_last and keep_best must be >= 0")
        if keep_last is not None and keep_last + keep_best == 0:
            raise ValueError("keep_last + keep_best must be >= 1 (keep_last=None keeps all)")
        if keep_best and not best_metric:
            raise ValueError("keep_best needs best_metric")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.root = Path(root)
        self.run = validate_name(run, "run")
        self.run_dir = self.root / self.run
        self.keep_last, self.keep_best, self.best_metric, self.mode = keep_last, keep_best, best_metric, mode
        self.run_dir.mkdir(parents=True, exist_ok=True)
        check_contained(self.root, self.run_dir)
        clean_stale(self.run_dir)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._deleter = BackgroundDeleter()
        self._closed = False

    def close(self) -> None:
        """Wait for a pending save and for deletions, then stop the deleting thread.

        Raises:
            CheckpointError: a pending ``save_async`` failed.
        """
        self._closed = True
        try:
            self.wait()
        finally:
            self._deleter.close()

    def __enter__(self) -> CheckpointManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- saving -------------------------------------------------------------------------------

    def save(
        self,
        step: int,
        model: Stateful,
        optimizer: Stateful | None = None,
        scheduler: Stateful | None = None,
        metrics: Mapping[str, float] | None = None,
        epoch: int | None = None,
        config_digest: str | None = None,
        extra: Any = None,
        *,
        name: str | None = None,
    ) -> CheckpointInfo:
        """Write a checkpoint now and return it once its manifest is durable; then apply retention.

        Raises:
            CheckpointExistsError: a complete checkpoint with this name exists.
            UnsupportedStateError: some state cannot be stored without pickle.
            CheckpointError: a previous ``save_async`` failed.
        """
        self._check_open()
        self.wait()
        name = self.reserve_name(step, name)
        snapshot = snapshot_state(model, optimizer, scheduler, extra, to_cpu)
        return self._write(name, step, snapshot, metrics, epoch, config_digest)

    def save_async(
        self,
        step: int,
        model: Stateful,
        optimizer: Stateful | None = None,
        scheduler: Stateful | None = None,
        metrics: Mapping[str, float] | None = None,
        epoch: int | None = None,
        config_digest: str | None = None,
        extra: Any = None,
        *,
        name: str | None = None,
    ) -> None:
        """Copy the state to host memory now, then write it in a background thread.

        The caller may change the model and optimizer as soon as this returns. A failure of the
        background write is raised by the next call on this manager (or by :meth:`wait`).
        """
        self._check_open()
        self.wait()
        name = self.reserve_name(step, name)
        snapshot = snapshot_state(model, optimizer, scheduler, extra, host_copy)
        if torch.cuda.is_available():
            torch.cuda.synchronize()

        def run() -> None:
            lower_current_thread_priority()
            try:
                self._write(name, step, snapshot, metrics, epoch, config_digest)
            except BaseException as exc:
                self._error = exc

        self._thread = threading.Thread(target=run, name=f"ckpt-save-{name}", daemon=False)
        self._thread.start()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the checkpoint manager of run {self.run!r} was closed")

    def wait(self) -> None:
        """Wait for a pending ``save_async`` and for pruned checkpoints' files to be deleted; raise
        :class:`CheckpointError` if the save failed."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._deleter.wait()
        if self._error is not None:
            error, self._error = self._error, None
            raise CheckpointError(f"background checkpoint save failed: {error}") from error

    def busy(self) -> bool:
        """Whether :meth:`wait` would block (a save still being written, pruned files being deleted)."""
        return (self._thread is not None and self._thread.is_alive()) or self._deleter.pending > 0

    def reserve_name(self, step: int, name: str | None = None) -> str:
        """Validate ``step`` and the checkpoint name (default ``step-<step>``) for a new save.

        Raises:
            ValueError: a negative or non-int step.
            InvalidCheckpointNameError: an unsafe name.
            CheckpointExistsError: a complete checkpoint with that name exists.
        """
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"step must be an int >= 0, got {step!r}")
        name = validate_name(name if name is not None else f"step-{step:09d}")
        try:
            read_manifest(self.run_dir / name)
        except CheckpointCorruptError:
            return name
        raise CheckpointExistsError(f"checkpoint {name!r} already exists in run {self.run!r}")

    def _write(
        self,
        name: str,
        step: int,
        snapshot: Snapshot,
        metrics: Mapping[str, float] | None,
        epoch: int | None,
        config_digest: str | None,
    ) -> CheckpointInfo:
        started = time.perf_counter()
        final, files = write_components(self.run_dir, name, snapshot, self.hash_algorithm)
        info = CheckpointInfo(
            name=name,
            path=final,
            step=step,
            epoch=epoch,
            metrics={k: float(v) for k, v in (metrics or {}).items()},
            created_at=now_iso(),
            config_digest=config_digest,
            files=files,
            components=tuple(snapshot),
            versions=library_versions(),
            extra={"save_seconds": round(time.perf_counter() - started, 6)},
        )
        write_manifest(info)
        self.prune()
        return info

    # -- reading ------------------------------------------------------------------------------

    def list(self) -> builtins.list[CheckpointInfo]:
        """Checkpoints with a readable manifest, oldest first (by step, then creation time).

        Hashes are not checked here; use :meth:`verify`.
        """
        self.wait()
        return self._scan()

    def _scan(self) -> builtins.list[CheckpointInfo]:
        return scan_run(self.run_dir)

    def info(self, name: str) -> CheckpointInfo:
        """The manifest of checkpoint ``name``.

        Raises:
            InvalidCheckpointNameError: the name could leave the run directory.
            CheckpointNotFoundError: no such directory.
            CheckpointCorruptError: the directory has no valid manifest.
        """
        path = self.run_dir / validate_name(name)
        try:
            check_contained(self.root, path)
        except CheckpointNotFoundError as exc:
            raise CheckpointNotFoundError(f"no checkpoint {name!r} in run {self.run!r}") from exc
        if not is_real_dir(path):
            raise CheckpointNotFoundError(f"no checkpoint {name!r} in run {self.run!r}")
        return read_manifest(path)

    def verify(self, name: str | CheckpointInfo) -> VerifyResult:
        """Check every file of a checkpoint against the hash and size in its manifest."""
        self.wait()
        label = name.name if isinstance(name, CheckpointInfo) else name
        try:
            info = self.info(label)
        except CheckpointCorruptError as exc:
            return VerifyResult(label, False, error=str(exc))
        return verify_files(info)

    def read_component(self, name: str | CheckpointInfo, component: str) -> Any:
        """Verify and return one stored component (``model``, ``optimizer``, ``scheduler``, ``rng``,
        ``extra``) as nested state with CPU tensors.

        Raises:
            CheckpointCorruptError: the file does not match its manifest entry.
            KeyError: the checkpoint has no such component.
        """
        info = self.info(name.name if isinstance(name, CheckpointInfo) else name)
        if component not in info.components:
            raise KeyError(f"checkpoint {info.name!r} has no component {component!r}")
        return read_component_file(info, component)

    def load(
        self,
        name: str | CheckpointInfo,
        model: Stateful,
        optimizer: Stateful | None = None,
        scheduler: Stateful | None = None,
        restore_rng: bool = True,
        map_location: str | torch.device = "cpu",
        *,
        assign: bool = False,
    ) -> CheckpointInfo:
        """Verify every file, then load the states into the given objects.

        Nothing is applied unless the whole checkpoint verifies. Each file is read once into one
        buffer that the loaded tensors are views of; ``load_state_dict`` then copies them into the
        model's own tensors. With ``assign=True`` (a ``torch.nn.Module`` built on the ``meta``
        device, before its optimizer) the model takes those verified tensors as its parameters and
        buffers instead: no copy at all after the read.

        Raises:
            CheckpointNotFoundError, CheckpointCorruptError, InvalidCheckpointNameError.
            KeyError: an optimizer/scheduler was given but the checkpoint has none.
            TypeError: ``assign=True`` with a model that is not a ``torch.nn.Module``.
        """
        if assign and not isinstance(model, torch.nn.Module):
            raise TypeError("assign=True needs a torch.nn.Module")
        self.wait()
        info = self.info(name.name if isinstance(name, CheckpointInfo) else name)
        wanted = ["model", "rng"]
        for component, target in (("optimizer", optimizer), ("scheduler", scheduler)):
            if target is not None:
                if component not in info.components:
                    raise KeyError(f"checkpoint {info.name!r} has no {component} state")
                wanted.append(component)
        with ThreadPoolExecutor(_READ_WORKERS, thread_name_prefix="ckpt-read") as pool:
            reads = {c: pool.submit(read_component_file, info, c) for c in wanted}
            states = {c: fut.result() for c, fut in reads.items()}
        read = {f"{c}.safetensors": info.files[f"{c}.safetensors"] for c in wanted}
        rest = verify_files(info, skip=read)
        if not rest.ok:
            raise CheckpointCorruptError(
                f"{info.name}: files do not verify: {rest.mismatched + rest.missing}"
            )
        location = torch.device(map_location)
        if location.type != "cpu":
            states = {c: move_to(s, location) for c, s in states.items()}
        if isinstance(model, torch.nn.Module):
            model.load_state_dict(states["model"], assign=assign)
        else:
            model.load_state_dict(states["model"])
        if optimizer is not None:
            optimizer.load_state_dict(states["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(states["scheduler"])
        if restore_rng:
            _restore_rng(states["rng"])
        return info

    def resume_latest(
        self,
        model: Stateful,
        optimizer: Stateful | None = None,
        scheduler: Stateful | None = None,
        restore_rng: bool = True,
        map_location: str | torch.device = "cpu",
    ) -> CheckpointInfo | None:
        """Load the newest checkpoint that verifies, skipping corrupt ones; None if there is none."""
        for info in reversed(self.list()):
            try:
                return self.load(info, model, optimizer, scheduler, restore_rng, map_location)
            except CheckpointCorruptError as exc:
                log.warning("skipping checkpoint %s: %s", info.name, exc)
        return None

    # -- retention ----------------------------------------------------------------------------

    def prune(self) -> builtins.list[str]:
        """Delete checkpoints outside the retention policy; returns the names removed.

        They are gone for every reader on return; their files are deleted in the background
        (:meth:`wait` waits for that).
        """
        return prune_run(
            self._scan(), self.keep_last, self.keep_best, self.best_metric, self.mode, self._deleter.submit
        )
