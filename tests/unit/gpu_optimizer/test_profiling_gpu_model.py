"""The CUDA caching-allocator model, the GPU table, training setups and the fit verdict."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from gpu_optimizer.cli import app
from gpu_optimizer.profiling import GPT, GPTConfig, StepOptions, estimate, get_model_spec, model_source
from gpu_optimizer.profiling.allocator import MIN_BLOCK, CachingAllocatorModel, round_size, segment_size
from gpu_optimizer.profiling.gpus import GIB, MIB, gpu_names, resolve_gpu
from gpu_optimizer.profiling.setup import TrainingSetup
from gpu_optimizer.profiling.verdict import gpu_verdict

runner = CliRunner()


def test_rounding_and_segment_sizes_follow_the_cuda_allocator() -> None:
    assert round_size(1) == MIN_BLOCK == 512
    assert round_size(513) == 1024
    assert segment_size(round_size(4)) == 2 * MIB  # small pool
    assert segment_size(round_size(MIB + 1)) == 20 * MIB  # large, under 10 MiB
    assert segment_size(round_size(11 * MIB + 1)) == 12 * MIB  # rounded up to 2 MiB


def test_freed_blocks_are_reused_split_and_merged_without_growing_reserved() -> None:
    alloc = CachingAllocatorModel()
    alloc.malloc(1, 3 * MIB)  # one 20 MiB segment, split
    alloc.malloc(2, 3 * MIB)  # the same segment's remainder
    assert (alloc.reserved, alloc.allocated, alloc.segments) == (20 * MIB, 6 * MIB, 1)
    alloc.release(1)
    alloc.release(2)  # merges back into one free 20 MiB block
    alloc.malloc(3, 15 * MIB)  # fits the merged block: no new segment
    assert (alloc.reserved, alloc.segments) == (20 * MIB, 1)
    alloc.malloc(4, 15 * MIB)  # does not: a second segment, rounded to 2 MiB
    assert alloc.reserved == 20 * MIB + 16 * MIB == alloc.peak_reserved
    # The 1 MiB left in the new segment is not split off (large pool: only above 1 MiB).
    assert alloc.peak_allocated == 15 * MIB + 16 * MIB
    alloc.malloc(5, 0)  # empty tensors never reach the allocator
    assert alloc.allocated == 31 * MIB


def test_gpu_table_is_data_and_budgets_parse() -> None:
    assert {"rtx-4090", "h100-80gb", "a100-40gb", "rtx-3060"} <= set(gpu_names())
    h100 = resolve_gpu("H100-80GB")
    assert h100.memory_bytes == 80 * GIB
    assert h100.cublas_workspace_bytes == 32 * MIB
    assert resolve_gpu("12").memory_bytes == 12 * GIB
    assert resolve_gpu("12.5GB").memory_bytes == int(12.5 * GIB)
    for bad in ("rtx-9999", "0", "-3"):
        with pytest.raises(ValueError, match="GPU"):
            resolve_gpu(bad)


@pytest.fixture(scope="module")
def gpt() -> GPT:
    return GPT(GPTConfig(layers=2, d_model=64, heads=4, vocab=128, seq=32))


def gpt_estimate(model: torch.nn.Module, **kwargs: object) -> object:
    return estimate(model, (32,), input_dtype=torch.long, batch_size=4, **kwargs)  # type: ignore[arg-type]


def test_cuda_target_prices_foreach_and_allocator_rounding(gpt: GPT) -> None:
    cuda = estimate(gpt, (32,), input_dtype=torch.long, batch_size=1, device="cuda")
    single = estimate(
        gpt,
        (32,),
        input_dtype=torch.long,
        batch_size=1,
        device="cuda",
        options=StepOptions(optimizer_impl="single"),
    )
    assert single.peak_bytes < cuda.peak_bytes  # foreach's temporaries
    assert cuda.allocated_peak_bytes is not None
    assert cuda.reserved_peak_bytes is not None
    assert cuda.peak_bytes <= cuda.allocated_peak_bytes <= cuda.reserved_peak_bytes
    assert cuda.reserved_peak_bytes % (2 * MIB) == 0


def test_sharding_divides_what_each_stage_shards(gpt: GPT) -> None:
    def report(sharding: str) -> Any:
        opts = StepOptions(sharding=sharding, world_size=4)  # type: ignore[arg-type]
        return estimate(gpt, (32,), input_dtype=torch.long, batch_size=1, options=opts)

    none, ddp, zero1, zero3 = report("none"), report("ddp"), report("zero1"), report("zero3")
    assert ddp.peak_bytes - none.peak_bytes == ddp.peak_breakdown["sharding"] > 0  # DDP's buckets
    assert none.peak_bytes > zero1.peak_bytes
    assert zero1.peak_breakdown["optimizer_state"] < none.optimizer_state_bytes / 3
    # Stage 3 keeps a quarter of the parameters, plus the gathered units as "sharding" buffers.
    assert zero3.peak_breakdown["parameters"] <= none.parameter_bytes / 4 + 512
    assert zero3.peak_breakdown["sharding"] > 0
    with pytest.raises(ValueError, match="world_size"):
        StepOptions(world_size=0)


def test_setup_validation_and_labels() -> None:
    with pytest.raises(ValueError, match="world_size"):
        TrainingSetup(sharding="fsdp")
    with pytest.raises(ValueError, match="divisible"):
        TrainingSetup(accumulation_steps=3).micro_batch(8)
    setup = TrainingSetup("amp-bf16", sharding="fsdp", world_size=4, accumulation_steps=2)
    assert setup.label() == "amp-bf16 + accumulate x2 + fsdp x4"
    assert setup.dtype == torch.float32
    assert setup.step_options().autocast_dtype == torch.bfloat16


def test_verdict_fits_finds_largest_batch_and_cheapest_fix(gpt: GPT) -> None:
    small = resolve_gpu("0.5")  # under the 500 MiB context allowance alone: nothing fits
    none = gpu_verdict(gpt, (32,), small, batch_size=4, input_dtype=torch.long, batch_limit=64)
    assert not none.fits
    assert none.largest_batch is None
    assert none.cheapest is None
    assert none.tried
    big = gpu_verdict(gpt, (32,), resolve_gpu("1"), batch_size=4, input_dtype=torch.long, batch_limit=64)
    assert big.fits
    assert big.largest_batch == 64
    assert big.requested.device_bytes == big.requested.reserved_bytes + big.target["context_bytes"]
    # A budget just under the requested step's need: a cheaper setup must make it fit.
    need = big.requested.device_bytes
    tight = resolve_gpu(str((need - 1) / GIB))
    fix = gpu_verdict(gpt, (32,), tight, batch_size=4, input_dtype=torch.long, batch_limit=64, gpus=2)
    assert not fix.fits
    assert fix.cheapest is not None
    assert fix.cheapest.fits
    assert fix.cheapest.device_bytes <= tight.memory_bytes < fix.requested.device_bytes
    assert fix.tried[-1] == fix.cheapest
    assert all(not p.fits for p in fix.tried[:-1])
    assert [p.cost for p in fix.tried] == sorted(p.cost for p in fix.tried)


def test_cli_profile_with_gpu_gives_a_verdict_table_and_json() -> None:
    args = ["profile", "gpt-tiny", "--batch", "4", "--input", "16", "--gpu", "rtx-3060"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Verdict on rtx-3060" in result.output
    assert "fits" in result.output
    assert "largest" in result.output
    assert "assumes:" in result.output
    result = runner.invoke(app, [*args, "--precision", "amp-bf16", "--keep-output", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["device"] == "cuda"
    assert data["verdict"]["fits"] is True
    assert data["verdict"]["requested"]["setup"]["precision"] == "amp-bf16"
    assert any("autocast" in n for n in data["notes"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--gpu", "rtx-9999"], "unknown GPU"),
        (["--sharding", "fsdp"], "world_size"),
        (["--accumulate", "3"], "divisible"),
        (["--checkpoint", "blocks.7"], "cannot checkpoint"),
    ],
)
def test_cli_bad_setups_are_clear_errors(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["profile", "gpt-tiny", "--batch", "4", "--input", "16", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_spec_models_build_on_meta_for_the_verdict() -> None:
    spec = get_model_spec("gpt-tiny")
    report = estimate(
        model_source(spec), (16,), batch_size=2, input_dtype=torch.long, loss_fn=spec.loss_fn, device="cuda"
    )
    assert report.allocated_peak_bytes is not None
    assert report.allocated_peak_bytes % 512 == 0
