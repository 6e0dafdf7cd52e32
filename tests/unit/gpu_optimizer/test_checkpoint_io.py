"""The chunked, hash-while-streaming safetensors reader and writer (checkpoints/tensorio.py).

Chunks are shrunk to a few KiB so that small tensors cross many chunk boundaries, which is where a
pipelined reader or writer would drop, repeat or misplace bytes.
"""

from __future__ import annotations

import gc
import hashlib
from pathlib import Path

import blake3
import pytest
import torch
from safetensors.torch import load_file

from gpu_optimizer.checkpoints import CheckpointManager, tensorio
from gpu_optimizer.checkpoints.errors import CheckpointCorruptError
from gpu_optimizer.checkpoints.tensorio import FileDigest, hash_file, read_tensors, write_tensors


@pytest.fixture(autouse=True, params=["buffered", "direct"])
def small_chunks(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """Small chunks; every test runs with buffered reads and with O_DIRECT reads into a huge-page
    buffer (the path taken for large files that are not in the page cache), which fall back to
    buffered where refused."""
    monkeypatch.setattr(tensorio, "CHUNK_BYTES", 4096)
    if request.param == "direct":
        monkeypatch.setattr(tensorio, "DIRECT_MIN_BYTES", 0)
        monkeypatch.setattr(tensorio, "HUGE_MIN_BYTES", 0)
        monkeypatch.setattr(tensorio, "_cached", lambda fd, size: False)


def mixed_tensors() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(7)
    return {
        "w.f32": torch.randn(97, 61, generator=gen),
        "w.f64": torch.randn(1234, generator=gen, dtype=torch.float64),
        "w.bf16": torch.randn(33, 77, generator=gen).to(torch.bfloat16),
        "idx.i64": torch.randint(-(2**40), 2**40, (555,), generator=gen),
        "mask": torch.rand(3001, generator=gen) > 0.5,
        "bytes.u8": torch.randint(0, 256, (10007,), generator=gen, dtype=torch.uint8),
        "empty": torch.empty(0, 5),
        "scalar": torch.tensor(3.5),
        # A non-contiguous view: the writer must store its logical order, not its memory order.
        "t.f32": torch.randn(40, 50, generator=gen).t(),
    }


@pytest.mark.parametrize("algorithm", ["blake3", "sha256"])
def test_round_trip_across_chunks_is_exact_and_standard(tmp_path: Path, algorithm: str) -> None:
    tensors = mixed_tensors()
    path = tmp_path / "state.safetensors"
    digest = write_tensors(path, tensors, {"skeleton": "{}"}, algorithm=algorithm)

    assert digest == hash_file(path, algorithm)
    # The streamed, pipelined hash equals the library's one-shot hash of the whole file.
    whole = path.read_bytes()
    reference = blake3.blake3(whole) if algorithm == "blake3" else hashlib.sha256(whole)
    assert (digest.algorithm, digest.digest) == (algorithm, reference.hexdigest())
    assert digest.size > 10 * tensorio.CHUNK_BYTES

    loaded, metadata = read_tensors(path, digest)
    standard = load_file(path)
    assert metadata == {"skeleton": "{}"}
    assert set(loaded) == set(tensors) == set(standard)
    for key, tensor in tensors.items():
        for got in (loaded[key], standard[key]):
            assert got.dtype == tensor.dtype
            assert got.shape == tensor.shape
            assert torch.equal(got, tensor), key


@pytest.mark.parametrize("algorithm", ["blake3", "sha256"])
def test_file_of_one_chunk_hashed_in_the_writing_thread_is_exact(tmp_path: Path, algorithm: str) -> None:
    # Header and tensors below one chunk: written piece by piece, hashed without a hashing thread.
    tensors = {"a": torch.arange(100, dtype=torch.int64), "b": torch.randn(7, 3), "m": torch.rand(9) > 0.5}
    path = tmp_path / "small.safetensors"
    digest = write_tensors(path, tensors, {"skeleton": "{}"}, algorithm=algorithm)

    whole = path.read_bytes()
    assert digest.size == len(whole) <= tensorio.CHUNK_BYTES
    reference = blake3.blake3(whole) if algorithm == "blake3" else hashlib.sha256(whole)
    assert digest == FileDigest(reference.hexdigest(), len(whole), algorithm) == hash_file(path, algorithm)
    loaded, _ = read_tensors(path, digest)
    for key, tensor in tensors.items():
        assert torch.equal(loaded[key], tensor)


def test_loaded_tensors_are_fresh_memory(tmp_path: Path) -> None:
    tensors = mixed_tensors()
    path = tmp_path / "state.safetensors"
    digest = write_tensors(path, tensors)
    loaded, _ = read_tensors(path, digest)
    # The buffer (a huge-page mapping in the "direct" case) lives as long as a tensor viewing it.
    gc.collect()
    before = tensors["w.f32"].clone()
    loaded["w.f32"].add_(1.0)
    assert torch.equal(tensors["w.f32"], before)
    assert torch.equal(read_tensors(path, digest)[0]["w.f32"], before)


def test_huge_page_buffer_is_aligned_writable_and_outlives_its_mapping_object() -> None:
    nbytes = tensorio.HUGE_MIN_BYTES + 12345
    buffer = tensorio._fresh_buffer(nbytes)
    gc.collect()
    assert buffer.numel() == nbytes
    assert buffer.data_ptr() % (2 << 20) == 0  # O_DIRECT needs 4 KiB; whole huge pages need 2 MiB
    buffer[-1] = 7
    tail = buffer[-2:].clone()
    del buffer
    gc.collect()
    assert tail.tolist() == [0, 7]  # fresh anonymous memory reads as zeros until written


@pytest.mark.parametrize("where", [0.0, 0.5, 0.999])
def test_flipped_byte_in_any_chunk_is_detected(tmp_path: Path, where: float) -> None:
    path = tmp_path / "state.safetensors"
    digest = write_tensors(path, mixed_tensors())
    raw = bytearray(path.read_bytes())
    header_end = 8 + int.from_bytes(raw[:8], "little")
    offset = header_end + int((len(raw) - header_end - 1) * where)
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointCorruptError, match="hash does not match"):
        read_tensors(path, digest)


def test_truncated_file_is_detected_with_and_without_a_digest(tmp_path: Path) -> None:
    path = tmp_path / "state.safetensors"
    digest = write_tensors(path, mixed_tensors())
    path.write_bytes(path.read_bytes()[: digest.size - 5 * tensorio.CHUNK_BYTES])
    with pytest.raises(CheckpointCorruptError, match="size"):
        read_tensors(path, digest)
    with pytest.raises(CheckpointCorruptError, match="bad entry"):
        read_tensors(path)


def test_wrong_recorded_hash_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "state.safetensors"
    digest = write_tensors(path, mixed_tensors())
    with pytest.raises(CheckpointCorruptError, match="hash does not match"):
        read_tensors(path, FileDigest("0" * 64, digest.size))


def test_manager_load_reads_components_together_and_applies_nothing_if_one_is_corrupt(
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(64, 32)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(8, 64)).sum().backward()
    optimizer.step()
    manager = CheckpointManager(tmp_path, "run")
    info = manager.save(1, model, optimizer)

    fresh = torch.nn.Linear(64, 32)
    fresh_optimizer = torch.optim.Adam(fresh.parameters())
    manager.load(info, fresh, fresh_optimizer)
    assert torch.equal(fresh.weight, model.weight)
    saved_moment = optimizer.state_dict()["state"][0]["exp_avg"]
    assert torch.equal(fresh_optimizer.state_dict()["state"][0]["exp_avg"], saved_moment)

    victim = info.path / "optimizer.safetensors"
    raw = bytearray(victim.read_bytes())
    raw[-3] ^= 0xFF
    victim.write_bytes(bytes(raw))
    untouched = torch.nn.Linear(64, 32)
    before = untouched.weight.detach().clone()
    with pytest.raises(CheckpointCorruptError, match=r"optimizer\.safetensors"):
        manager.load(info, untouched, torch.optim.Adam(untouched.parameters()))
    assert torch.equal(untouched.weight, before)


def test_load_with_assign_gives_a_meta_model_the_verified_tensors_without_a_copy(tmp_path: Path) -> None:
    torch.manual_seed(0)
    trained = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.LayerNorm(32))
    manager = CheckpointManager(tmp_path, "run")
    info = manager.save(1, trained)
    with torch.device("meta"):
        skeleton = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.LayerNorm(32))
    manager.load(info, skeleton, restore_rng=False, assign=True)
    for (key, got), want in zip(skeleton.state_dict().items(), trained.state_dict().values(), strict=True):
        assert got.device.type == "cpu", key
        assert torch.equal(got, want), key
    # Every parameter is a view of the one buffer the model file was read into.
    storages = {p.untyped_storage().data_ptr() for p in skeleton.parameters()}
    assert len(storages) == 1
    with pytest.raises(TypeError, match="Module"):
        manager.load(info, _NotAModule(), assign=True)


class _NotAModule:
    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor], /) -> None:
        raise AssertionError("never called")
