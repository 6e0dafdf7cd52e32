"""Known architectures by name: what the service and the CLI may profile (never user code).

Every entry builds its model with random weights and nothing downloaded.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from gpu_optimizer.profiling.gpt import GPT, GPTConfig, next_token_loss
from service_kit.thirdparty import configure_ultralytics

Family = Literal["torchvision", "ultralytics", "gpt", "custom"]


@dataclass(frozen=True)
class ModelSpec:
    """How to build one architecture and feed it.

    `input_shape` excludes the batch dimension; `input_dtype` None means the training dtype.
    `meta_ok` says whether `build` may run under the meta device (ultralytics runs a forward in
    its constructor, so it is built for real; those models are small).
    """

    name: str
    family: Family
    description: str
    build: Callable[[], torch.nn.Module]
    input_shape: tuple[int, ...]
    input_dtype: torch.dtype | None = None
    loss_fn: Callable[[Any], torch.Tensor] | None = None
    meta_ok: bool = True


def _torchvision(name: str) -> Callable[[], torch.nn.Module]:
    def build() -> torch.nn.Module:
        import torchvision

        model: torch.nn.Module = torchvision.models.get_model(name, weights=None)
        return model

    return build


def _ultralytics(yaml_name: str) -> Callable[[], torch.nn.Module]:
    def build() -> torch.nn.Module:
        # ultralytics reads its environment at import: stay offline, never pip-install, no settings in ~.
        configure_ultralytics(Path(tempfile.gettempdir()) / "gpu_optimizer")
        from ultralytics.nn.tasks import DetectionModel, PoseModel

        cls = PoseModel if "pose" in yaml_name else DetectionModel
        model: torch.nn.Module = cls(yaml_name, verbose=False)
        return model

    return build


def _gpt(cfg: GPTConfig) -> Callable[[], torch.nn.Module]:
    return lambda: GPT(cfg)


def _gpt_spec(name: str, cfg: GPTConfig) -> ModelSpec:
    millions = cfg.parameter_count / 1e6
    return ModelSpec(
        name=name,
        family="gpt",
        description=(
            f"GPT-style decoder, {cfg.layers} layers, d_model {cfg.d_model}, {cfg.heads} heads, "
            f"vocab {cfg.vocab}, seq {cfg.seq} ({millions:,.0f}M parameters)"
        ),
        build=_gpt(cfg),
        input_shape=(cfg.seq,),
        input_dtype=torch.long,
        loss_fn=next_token_loss,
    )


_TORCHVISION = {
    "resnet18": "ResNet-18 image classifier",
    "resnet50": "ResNet-50 image classifier",
    "mobilenet_v3_small": "MobileNetV3-Small image classifier",
    "mobilenet_v3_large": "MobileNetV3-Large image classifier",
    "vit_b_16": "ViT-B/16 vision transformer",
    "convnext_tiny": "ConvNeXt-Tiny image classifier",
}
_ULTRALYTICS = {
    "yolo11n-pose": "YOLO11n pose estimator (17 keypoints)",
    "yolo11s-pose": "YOLO11s pose estimator (17 keypoints)",
    "yolo11n": "YOLO11n object detector",
}
_GPT = {
    "gpt-tiny": GPTConfig(layers=2, d_model=64, heads=4, vocab=256, seq=64),
    "gpt2": GPTConfig(),
    "gpt2-medium": GPTConfig(layers=24, d_model=1024, heads=16),
    "gpt-1b": GPTConfig(layers=24, d_model=2048, heads=16, seq=2048),
    "gpt-7b": GPTConfig(layers=32, d_model=4096, heads=32, vocab=32000, seq=4096),
}

MODELS: dict[str, ModelSpec] = {
    **{n: ModelSpec(n, "torchvision", d, _torchvision(n), (3, 224, 224)) for n, d in _TORCHVISION.items()},
    **{
        n: ModelSpec(n, "ultralytics", d, _ultralytics(f"{n}.yaml"), (3, 640, 640), meta_ok=False)
        for n, d in _ULTRALYTICS.items()
    },
    **{n: _gpt_spec(n, cfg) for n, cfg in _GPT.items()},
}


def get_model_spec(name: str) -> ModelSpec:
    """The registry entry for `name`. Raises ValueError listing the valid names."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(sorted(MODELS))}") from None


def model_source(spec: ModelSpec) -> torch.nn.Module | Callable[[], torch.nn.Module]:
    """What `estimate` takes: the factory itself when it can build on meta, else a built model."""
    return spec.build if spec.meta_ok else spec.build()
