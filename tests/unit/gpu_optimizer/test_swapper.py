"""TensorSwapper: exact bytes through every tier, LRU order, budgets, prefetch, no leaks, errors."""

from __future__ import annotations

import gc
import hashlib
import random
from pathlib import Path

import psutil
import pytest
import torch

from gpu_optimizer.swapping import (
    DuplicateTensorError,
    SwapClosedError,
    TensorSwapper,
    TensorTooLargeError,
    Tier,
    UnknownTensorError,
)

KIB = 1024


def digest(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()


def live_tensors() -> int:
    # type(), not isinstance(): isinstance reads __class__, which warns on deprecated torch objects.
    return sum(issubclass(type(o), torch.Tensor) for o in gc.get_objects())


def assert_within_budgets(swapper: TensorSwapper) -> None:
    stats = swapper.stats()["tiers"]
    assert stats["device"]["bytes"] + swapper.stats()["device_pool_bytes"] <= swapper.budgets[Tier.DEVICE]
    assert stats["host"]["bytes"] + swapper.stats()["host_pool_bytes"] <= swapper.budgets[Tier.HOST]


def sample_tensors() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        "f32": torch.randn(256, generator=gen),
        "bf16": torch.randn(16, 32, generator=gen).to(torch.bfloat16),
        "i64": torch.randint(-(2**62), 2**62, (64,), generator=gen),
        "bool": torch.rand(1000, generator=gen) > 0.5,
        "u8": torch.randint(0, 256, (3, 5, 7), dtype=torch.uint8, generator=gen),
        "scalar": torch.tensor(3.5, dtype=torch.float64),
        "empty": torch.empty(0, 4),
        "noncontig": torch.randn(32, 16, generator=gen).t(),
    }


@pytest.mark.parametrize("first_tier", list(Tier))
def test_exact_bytes_through_every_tier(tmp_path: Path, first_tier: Tier) -> None:
    tensors = sample_tensors()
    hashes = {k: digest(v) for k, v in tensors.items()}
    with TensorSwapper(device_budget=2 * KIB, host_budget=1 * KIB, swap_dir=tmp_path) as swapper:
        for name, tensor in tensors.items():
            swapper.register(name, tensor.clone(), tier=first_tier)
            assert_within_budgets(swapper)
        seen = {swapper.tier_of(n) for n in tensors}
        for _ in range(3):
            for name in tensors:
                out = swapper.get(name)
                seen |= {swapper.tier_of(n) for n in tensors}
                assert out.dtype == tensors[name].dtype
                assert out.shape == tensors[name].shape
                assert digest(out) == hashes[name], name
                assert_within_budgets(swapper)
        assert seen == set(Tier)
        moved = swapper.stats()["tiers"]
        assert moved["disk"]["swaps_in"] > 0
        assert moved["host"]["swaps_in"] > 0


def test_least_recently_used_leaves_first(tmp_path: Path) -> None:
    with TensorSwapper(device_budget=3 * KIB, host_budget=1 * KIB, swap_dir=tmp_path) as swapper:
        for name in "abc":
            swapper.register(name, torch.zeros(256))  # 1 KiB each
        swapper.get("a")  # order now b, c, a
        swapper.register("d", torch.zeros(256))
        assert swapper.tier_of("b") is Tier.HOST
        assert {swapper.tier_of(n) for n in "cad"} == {Tier.DEVICE}
        swapper.register("e", torch.zeros(256))
        # c leaves the device; the host is full, so b (the older one there) goes to disk.
        assert swapper.tier_of("c") is Tier.HOST
        assert swapper.tier_of("b") is Tier.DISK
        assert [p.name for p in tmp_path.iterdir()] == ["00000001.swap"]


def test_thousand_swaps_do_not_leak(tmp_path: Path) -> None:
    rng = random.Random(0)
    sizes = {f"t{i}": 64 * KIB * (1 + i % 3) for i in range(6)}
    gc.collect()
    tensors_before = live_tensors()
    swapper = TensorSwapper(device_budget=256 * KIB, host_budget=192 * KIB, swap_dir=tmp_path)
    hashes = {}
    for name, size in sizes.items():
        tensor = torch.randint(0, 256, (size,), dtype=torch.uint8)
        hashes[name] = digest(tensor)
        swapper.register(name, tensor)
    del tensor

    def cycle(n: int) -> None:
        for _ in range(n):
            name = rng.choice(list(sizes))
            assert digest(swapper.get(name)) == hashes[name]
            assert_within_budgets(swapper)

    cycle(100)  # warm up the allocator and the host pool
    rss_before = psutil.Process().memory_info().rss
    swaps_before = swapper.stats()["tiers"]["device"]["swaps_in"]
    cycle(1000)
    gc.collect()
    stats = swapper.stats()
    assert stats["tiers"]["device"]["swaps_in"] - swaps_before >= 500
    assert psutil.Process().memory_info().rss - rss_before < 32 * 2**20
    for tier in Tier:
        expected = sum(sizes[n] for n in sizes if swapper.tier_of(n) is tier)
        assert stats["tiers"][tier.value]["bytes"] == expected
    on_disk = [n for n in sizes if swapper.tier_of(n) is Tier.DISK]
    assert len(list(tmp_path.iterdir())) == len(on_disk)
    for name in sizes:
        swapper.unregister(name)
    assert all(stats["bytes"] == 0 for stats in swapper.stats()["tiers"].values())
    assert list(tmp_path.iterdir()) == []
    swapper.close()
    assert swapper.stats()["host_pool_bytes"] == 0
    gc.collect()
    assert live_tensors() == tensors_before


def test_memory_reuse_never_touches_tensors_the_caller_still_holds(tmp_path: Path) -> None:
    with TensorSwapper(device_budget=2 * KIB, host_budget=4 * KIB, swap_dir=tmp_path) as swapper:
        for i in range(4):
            swapper.register(f"t{i}", torch.full((256,), float(i)))
        held = swapper.get("t0")
        view = swapper.get("t1")[10:20]
        for _ in range(5):  # t0 and t1 leave the device and others come in, many times over
            for i in (2, 3):
                swapper.get(f"t{i}")
        assert swapper.tier_of("t0") is not Tier.DEVICE
        assert torch.equal(held, torch.full((256,), 0.0))
        assert torch.equal(view, torch.full((10,), 1.0))
        for i in range(4):
            assert torch.equal(swapper.get(f"t{i}"), torch.full((256,), float(i)))


def test_close_removes_its_own_swap_dir() -> None:
    swapper = TensorSwapper(device_budget=KIB, host_budget=0)
    swapper.register("a", torch.ones(256))
    swapper.register("b", torch.ones(256))
    assert swapper.tier_of("a") is Tier.DISK
    directory = swapper.disk.directory
    swapper.close()
    assert not directory.exists()
    with pytest.raises(SwapClosedError):
        swapper.get("a")


def test_prefetch_brings_tensors_back_ahead_of_use(tmp_path: Path) -> None:
    with TensorSwapper(device_budget=4 * KIB, host_budget=2 * KIB, swap_dir=tmp_path) as swapper:
        data = {f"t{i}": torch.full((256,), float(i)) for i in range(8)}
        for name, tensor in data.items():
            swapper.register(name, tensor.clone())
        assert swapper.tier_of("t0") is Tier.DISK
        assert swapper.tier_of("t2") is Tier.HOST
        started = swapper.prefetch(["t0", "t2"])
        assert started == ["t0", "t2"]
        assert swapper.tier_of("t0") is Tier.DEVICE
        assert_within_budgets(swapper)
        assert torch.equal(swapper.get("t0"), data["t0"])
        assert torch.equal(swapper.get("t2"), data["t2"])
        assert not (tmp_path / "00000000.swap").exists()
        # Only four fit on the device: prefetch stops there instead of evicting its own names.
        assert swapper.prefetch([f"t{i}" for i in range(8)]) == ["t0", "t1", "t2", "t3"]
        for i in range(8):
            assert torch.equal(swapper.get(f"t{i}"), data[f"t{i}"])


def test_bad_input_raises_clear_errors(tmp_path: Path) -> None:
    with TensorSwapper(device_budget=KIB, host_budget=KIB, swap_dir=tmp_path) as swapper:
        with pytest.raises(UnknownTensorError, match="nope"):
            swapper.get("nope")
        with pytest.raises(UnknownTensorError):
            swapper.prefetch(["nope"])
        with pytest.raises(TensorTooLargeError, match="device budget"):
            swapper.register("big", torch.zeros(257))
        swapper.register("a", torch.zeros(4))
        with pytest.raises(DuplicateTensorError):
            swapper.register("a", torch.zeros(4))
        with pytest.raises(ValueError, match="device"):
            swapper.register("meta", torch.zeros(4, device="meta"))
        swapper.unregister("a")
        with pytest.raises(UnknownTensorError):
            swapper.unregister("a")
    with pytest.raises(ValueError, match="budgets"):
        TensorSwapper(device_budget=-1, host_budget=0)


def test_stats_report_bytes_moved_and_throughput(tmp_path: Path) -> None:
    with TensorSwapper(device_budget=KIB, host_budget=KIB, swap_dir=tmp_path) as swapper:
        swapper.register("a", torch.zeros(256))
        swapper.register("b", torch.zeros(256))  # a -> host
        swapper.register("c", torch.zeros(256))  # a -> disk, b -> host
        swapper.get("a")  # b -> disk, c -> host, a: disk -> device
        stats = swapper.stats()
        assert stats["bytes_moved"] == 6 * KIB
        assert stats["throughput_bytes_per_s"] > 0
        assert stats["tiers"]["device"]["tensors"] == 1
        assert stats["tiers"]["disk"]["swaps_in"] == 2
        assert stats["tiers"]["disk"]["swaps_out"] == 1
