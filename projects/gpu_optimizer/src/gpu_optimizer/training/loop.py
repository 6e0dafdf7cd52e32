"""The kit's training loop: the user brings a model, an optimizer factory, a dataset and a loss.

    trainer = Trainer(config, model, lambda params: torch.optim.AdamW(params, 1e-3), train_set, loss_fn,
                      scheduler_factory=..., eval_set=..., eval_fn=...)
    result = trainer.fit()

One step is one optimizer step over `global_batch_size` samples (see `data.StepSampler`) in
micro-batches with gradient accumulation, inside the TrainingGuard; the step's loss (averaged over
ranks) is checked by the guard and the spike detector before the optimizer steps.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Generator, Sequence
from functools import partial
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from gpu_optimizer.guard import GuardAction, GuardEvent, TrainingAborted, total_norm
from gpu_optimizer.training.config import TrainConfig
from gpu_optimizer.training.data import StepSampler, fetch, split, to_device
from gpu_optimizer.training.distributed import (
    DistContext,
    all_mean,
    broadcast_flag,
    init_distributed,
    no_grad_sync,
    wrap_model,
)
from gpu_optimizer.training.evaluation import evaluate
from gpu_optimizer.training.logs import JsonLog
from gpu_optimizer.training.memory import SimulatedDeviceLimit, initial_micro_batch
from gpu_optimizer.training.parts import (
    TrainResult,
    abort,
    autocast,
    lower_learning_rate,
    make_guard,
    optimizer_name,
    rank_log_path,
)
from gpu_optimizer.training.persist import Persistence
from gpu_optimizer.training.reporting import RunReporter
from gpu_optimizer.training.spikes import SpikeDetector

log = logging.getLogger("gpu_optimizer.training")

LossFn = Callable[[torch.nn.Module, Any], torch.Tensor]
EvalFn = Callable[[torch.nn.Module, Any], dict[str, float]]
OptimizerFactory = Callable[[Any], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


class Trainer:
    def __init__(
        self,
        config: TrainConfig,
        model: torch.nn.Module,
        optimizer_factory: OptimizerFactory,
        train_set: Any,
        loss_fn: LossFn,
        *,
        scheduler_factory: SchedulerFactory | None = None,
        eval_set: Any = None,
        eval_fn: EvalFn | None = None,
        input_shape: Sequence[int] | None = None,
        input_dtype: torch.dtype | None = None,
        memory_limit: SimulatedDeviceLimit | None = None,
        ctx: DistContext | None = None,
    ) -> None:
        self.config = config
        self.ctx = ctx or init_distributed()
        self.digest = config.digest
        torch.manual_seed(config.seed * 1_000_003 + self.ctx.rank)
        self.sampler = StepSampler(
            len(train_set),
            config.global_batch_size,
            seed=config.seed,
            rank=self.ctx.rank,
            world=self.ctx.world,
        )
        # Estimated on the plain module, before DDP/FSDP2 wrap (or shard) it.
        self.micro_batch = initial_micro_batch(
            config,
            model,
            train_set,
            self.sampler.per_rank,
            self.ctx.device,
            input_shape,
            input_dtype,
            optimizer_name(optimizer_factory, model),
        )
        self.model = wrap_model(model, self.ctx, config.strategy)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = optimizer_factory(self.model.parameters())
        self.scheduler = scheduler_factory(self.optimizer) if scheduler_factory else None
        self.train_set, self.loss_fn = train_set, loss_fn
        self.eval_set, self.eval_fn = eval_set, eval_fn
        self.memory_limit = memory_limit
        self.autocast_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[config.precision]
        self._autocast = partial(autocast, self.ctx.device.type, self.autocast_dtype)
        use_scaler = config.precision == "fp16"
        self.scaler = scaler = torch.amp.GradScaler(self.ctx.device.type) if use_scaler else None
        # When the last step's gradients are dropped. On a GPU before the forward, so its activations
        # get the memory the estimator planned for them (it counts no gradients during the forward).
        # On the CPU after the first forward, as a hand-written loop does: glibc's allocator maps and
        # trims memory by the order of frees and allocations, and in the other order the benchmark's
        # conv net took ~2,600 page faults a step against the plain loop's ~1,700 (2-4% of its step).
        self._drop_grads_after_forward = self.ctx.device.type == "cpu"
        self.guard = make_guard(config, self.model, self.optimizer, scaler, self.micro_batch, self._rollback)
        self.spikes = SpikeDetector(config.spike_factor, config.spike_window, config.spike_warmup)
        path = config.log_path
        path = path if self.ctx.is_main or path is None else rank_log_path(path, self.ctx.rank)
        self.log = JsonLog(path, config.run_name, self.digest, self.ctx.rank)
        url = config.service_url if self.ctx.is_main else None
        self.reporter = RunReporter(url, config.run_name, config.service_api_key) if url else None
        self.persist = Persistence.of_run(config, self.ctx, self.model, self.optimizer, self.scheduler)
        self.step = 0
        self.lr_scale = 1.0
        self.ooms = self.rollbacks = self.skipped = 0
        self._rolled_back = False
        self._last_saved: int | None = None
        self._last_save_time = time.monotonic()
        self.result = TrainResult(steps=0)

    def _meta(self) -> dict[str, Any]:
        pos = self.sampler.position(self.step)
        return {
            "step": self.step,
            "epoch": pos.epoch,
            "offset": pos.offset,
            "micro_batch": self.micro_batch,
            "lr_scale": self.lr_scale,
            "ooms": self.ooms,
            "rollbacks": self.rollbacks,
            "skipped": self.skipped,
            "spike_history": self.spikes.state(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
        }

    def _apply_meta(self, meta: dict[str, Any]) -> None:
        self.step = int(meta["step"])
        self.micro_batch = min(int(meta["micro_batch"]), self.micro_batch)
        self.guard.batch_size = self.micro_batch
        self.lr_scale = float(meta["lr_scale"])
        self.spikes.load(meta["spike_history"])
        self.guard.unchecked_steps = 0  # a checkpoint holds parameters checked before the save
        if self.scaler is not None and meta.get("scaler"):
            self.scaler.load_state_dict(meta["scaler"])

    def _save(self, *, final: bool = False) -> None:
        if self.persist is None or self._last_saved == self.step:
            return
        if self.guard.unchecked_steps:
            # Checked before the save and found non-finite, with an action that went on: never saved.
            self.log.write("checkpoint_refused", step=self.step, reason="nonfinite_parameter")
            return
        last = self.result.losses.get(self.step - 1)
        # Only a finite loss: manifests are JSON, and NaN would reach the service's checkpoint API.
        metrics = {"loss": last} if last is not None and math.isfinite(last) else {}
        self.persist.save(self.step, self._meta(), metrics)
        self._last_saved, self._last_save_time = self.step, time.monotonic()
        self.log.write("checkpoint", step=self.step, final=final)
        if final:
            self.persist.wait()

    def _due(self, step: int) -> bool:
        every = self.config.checkpoint_every_steps
        due = every is not None and step % every == 0
        if self.config.checkpoint_every_s is not None:
            late = time.monotonic() - self._last_save_time >= self.config.checkpoint_every_s
            due = due or broadcast_flag(late, self.ctx)
        return due

    def resume(self) -> int | None:
        """Load the newest verified checkpoint, if any; the step it resumes at."""
        if self.persist is None:
            return None
        meta = self.persist.load_latest()
        if meta is None:
            return None
        self._apply_meta(meta)
        self.ooms, self.rollbacks, self.skipped = (int(meta[k]) for k in ("ooms", "rollbacks", "skipped"))
        self._last_saved = self.step
        return self.step

    def _rollback(self) -> None:
        """Guard callback: back to the newest good checkpoint with a lower learning rate."""
        assert self.persist is not None
        if self.rollbacks >= self.config.max_rollbacks:
            detail = f"{self.rollbacks} rollbacks already (max_rollbacks)"
            raise abort("rollback_limit", self.step, detail, self.digest, self.micro_batch)
        bad_step = self.step
        meta = self.persist.load_latest()
        if meta is None:
            raise RuntimeError("rollback requested but no checkpoint verifies")
        counters = (self.ooms, self.rollbacks + 1, self.skipped)
        self._apply_meta(meta)
        self.ooms, self.rollbacks, self.skipped = counters
        factor = self.config.rollback_lr_factor
        self.lr_scale *= factor
        lower_learning_rate(self.optimizer, self.scheduler, factor)
        self._last_saved = self.step
        self._rolled_back = True
        self.log.write("rollback", from_step=bad_step, to_step=self.step, lr_scale=self.lr_scale)

    # -- the loop -------------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        """Train to `max_steps` (resuming from the newest verified checkpoint), evaluate, save."""
        for _ in self.steps():
            pass
        return self.result

    def steps(self) -> Generator[int, None, None]:
        """`fit()` one optimizer step at a time: yields the step count after each completed step
        (its checkpoint, evaluation and progress line done); once exhausted, the run has been
        evaluated and saved. Closed early, it waits for a pending save and leaves the run
        resumable from its newest checkpoint; `result` holds what was trained so far."""
        cfg = self.config
        resumed = self.resume()
        self.result.resumed_from = resumed
        self.log.write(
            "start" if resumed is None else "resume",
            step=self.step,
            world=self.ctx.world,
            restarts=self.ctx.restart_count,
            micro_batch=self.micro_batch,
            config=cfg.to_dict(),
        )
        if resumed is None and self.persist is not None and self.persist.latest_step() is None:
            self._save()  # the first "last good state" a rollback can return to
        window_start, window_samples = time.perf_counter(), 0
        try:
            while self.step < cfg.max_steps:
                loss = self._train_step()
                if loss is None:
                    continue
                window_samples += cfg.global_batch_size
                if self._save_due:
                    self._save()
                if cfg.eval_every_steps and self.step % cfg.eval_every_steps == 0:
                    self._evaluate()
                if self.step % cfg.log_every_steps == 0 or self.step == cfg.max_steps:
                    now = time.perf_counter()
                    rate = window_samples / max(now - window_start, 1e-9)
                    window_start, window_samples = now, 0
                    self._progress(loss, rate, "running")
                yield self.step
            if self.eval_set is not None and self.eval_fn is not None:
                self._evaluate()
            self._save(final=True)
            self._progress(self.result.losses.get(self.step - 1, math.nan), 0.0, "finished")
        except TrainingAborted as exc:
            self.log.write("abort", step=self.step, guard_event=exc.event.to_dict())
            self._progress(math.nan, 0.0, "aborted")
            raise
        finally:
            self.optimizer.zero_grad(set_to_none=True)
            if self.persist is not None:
                self.persist.wait()
            self.log.close()
            if self.reporter is not None:
                self.reporter.close()
            res = self.result
            res.steps, res.micro_batch = self.step, self.micro_batch
            res.ooms, res.rollbacks, res.skipped = self.ooms, self.rollbacks, self.skipped

    def _train_step(self) -> float | None:
        """One optimizer step; the step's loss, or None when the step must be redone (OOM, rollback)."""
        indices = self.sampler.indices(self.step)
        rng = torch.get_rng_state()
        per_rank = len(indices)
        spiked = False
        step_loss = math.nan
        self._rolled_back = False
        # Decided before the step, so the step checks the parameters a save will write.
        self._save_due = self._due(self.step + 1)
        verify = self._save_due or self.step + 1 == self.config.max_steps
        with self.guard.step() as gs:
            # Dropped at the next step, not after the optimizer step: that cost ~5% of a small CPU step.
            if not self._drop_grads_after_forward:
                self.optimizer.zero_grad(set_to_none=True)
            parts: list[torch.Tensor] = []
            micros = split(indices, self.micro_batch)
            for i, micro in enumerate(micros):
                if self.memory_limit is not None:
                    self.memory_limit.check(len(micro))
                batch = to_device(fetch(self.train_set, micro), self.ctx.device)
                with no_grad_sync(self.model, i == len(micros) - 1), self._autocast():
                    loss = self.loss_fn(self.model, batch)
                    if i == 0 and self._drop_grads_after_forward:
                        self.optimizer.zero_grad(set_to_none=True)
                    if len(micros) > 1:
                        loss = loss * (len(micro) / per_rank)
                    parts.append(loss.detach())
                    scaled = self.scaler.scale(loss) if self.scaler is not None else loss
                    torch.autograd.backward(scaled)
            # One host sync for the step's loss, summed in float64 over the micro-batches.
            total = parts[0] if len(parts) == 1 else torch.stack(parts).double().sum()
            step_loss = all_mean(float(total), self.ctx)
            if not math.isfinite(step_loss):
                # The guard answers for the loss every rank agrees on (a detached copy: the
                # micro-batches' backward is done); a finite loss would pass its check anyway.
                gs.backward(torch.tensor(step_loss, requires_grad=True))
            grad_norm = None
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
                # One check (the norm the guard then uses) instead of the scaler's own pass.
                grads = [p.grad for p in self.params if p.grad is not None]
                grad_norm = total_norm(grads, exact=self.config.grad_clip_norm is not None)
                if not math.isfinite(grad_norm):
                    self.scaler.update()  # fp16 overflow: the scaler lowers its scale; not a fault
                    self.optimizer.zero_grad(set_to_none=True)
                    gs.skipped = True
            spiked = not gs.skipped and self.spikes.is_spike(step_loss)
            if not (spiked or gs.skipped):  # the next step drops the gradients
                gs.optimizer_step(grad_norm)
                if self.scaler is not None:
                    self.scaler.update()
            if verify:
                gs.verify_parameters()
        event = gs.event
        if event is not None:
            self.log.write("guard", **event.to_dict())
            self.result.events.append(event.to_dict())
            if event.kind == "oom":
                self.ooms += 1
                self.micro_batch = self.guard.batch_size
                torch.set_rng_state(rng)  # redo the same step with the same randomness
                self.log.write(
                    "oom",
                    step=self.step,
                    micro_batch=self.micro_batch,
                    accumulation=math.ceil(per_rank / self.micro_batch),
                )
                return None
        if self._rolled_back:
            return None
        if spiked:
            handled = self._on_spike(step_loss)
            if handled is None:
                return None
        if gs.skipped or spiked:
            self.skipped += 1
        else:
            self.spikes.accept(step_loss)
        self.result.losses[self.step] = step_loss
        if self.scheduler is not None:
            self.scheduler.step()
        self.step += 1
        return step_loss

    def _on_spike(self, loss: float) -> float | None:
        action, median = self.config.on_loss_spike, self.spikes.median()
        detail = f"loss {loss:.4g} > {self.config.spike_factor} x median {median:.4g}"
        values = {"loss": loss, "median": median}
        batch = self.micro_batch
        event = GuardEvent("loss_spike", self.step, action, detail, self.digest, batch, values=values)
        record = event.to_dict()
        self.log.write("guard", **record)
        self.result.events.append(record)
        log.warning("loss spike at step %d -> %s", self.step, action.value, extra={"guard_event": record})
        if action is GuardAction.ABORT:
            raise TrainingAborted(event)
        if action is GuardAction.ROLLBACK:
            self._rollback()
            return None
        if action is GuardAction.REDUCE_BATCH:
            self.micro_batch = self.guard.batch_size = max(1, self.micro_batch // 2)
        return loss

    def _evaluate(self) -> None:
        assert self.eval_fn is not None
        # DDP's forward may sync buffers across ranks; evaluation runs on the plain module.
        module = self.model.module if isinstance(self.model, DistributedDataParallel) else self.model
        metrics = evaluate(
            module, self.eval_set, self.eval_fn, self.ctx, self.config.global_batch_size, self._autocast
        )
        self.result.eval = metrics
        self.log.write("eval", step=self.step, **metrics)

    def _progress(self, loss: float, samples_per_s: float, status: str) -> None:
        record = self.log.write(
            "progress" if status == "running" else status,
            step=self.step,
            loss=loss,
            samples_per_s=round(samples_per_s, 3),
            lr=self.optimizer.param_groups[0]["lr"],
            micro_batch=self.micro_batch,
            ooms=self.ooms,
            rollbacks=self.rollbacks,
            skipped=self.skipped,
        )
        if self.reporter is not None:
            self.reporter.report_progress(
                status,
                record,
                samples_per_s=samples_per_s,
                max_steps=self.config.max_steps,
                restarts=self.ctx.restart_count,
                world_size=self.ctx.world,
                config_digest=self.digest,
                eval_metrics=self.result.eval,
            )
