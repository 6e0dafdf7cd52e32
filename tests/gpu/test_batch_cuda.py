"""Batch-size search with real CUDA steps: OOMs are survived and leave the training state alone."""

from __future__ import annotations

import hashlib

import torch

from gpu_optimizer.profiling import CudaStepProbe, find_max_batch_cuda, get_model_spec


def state_digest(model: torch.nn.Module, opt: torch.optim.Optimizer) -> str:
    h = hashlib.sha256()
    tensors = [*model.state_dict().values()]
    tensors += [t for st in opt.state.values() for t in st.values() if isinstance(t, torch.Tensor)]
    tensors += [p.grad for p in model.parameters() if p.grad is not None]
    for t in tensors:
        h.update(t.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def test_oom_probe_leaves_state_unchanged_and_memory_freed() -> None:
    spec = get_model_spec("resnet50")
    model = spec.build().cuda().train()
    opt = torch.optim.AdamW(model.parameters())
    torch.nn.functional.cross_entropy(
        model(torch.randn(2, 3, 224, 224, device="cuda")), torch.zeros(2).long().cuda()
    ).backward()
    opt.step()
    before = state_digest(model, opt)
    allocated = torch.cuda.memory_allocated()
    probe = CudaStepProbe(model, (3, 224, 224), optimizer="adamw")
    assert probe(4096) is False  # hundreds of GB of activations: out of memory mid-forward
    assert state_digest(model, opt) == before
    assert torch.cuda.memory_allocated() == allocated
    assert probe(2) is True
    assert state_digest(model, opt) == before


def test_find_max_batch_cuda_returns_a_fitting_batch() -> None:
    spec = get_model_spec("resnet18")
    model = spec.build().cuda()
    probe = CudaStepProbe(model, (3, 224, 224), optimizer="sgd", safety_margin=0.2)
    search = find_max_batch_cuda(probe, limit=1024)
    assert search.batch_size >= 1
    assert (search.batch_size, True) in search.probes
    assert search.peak_bytes[search.batch_size] <= probe.allowed
