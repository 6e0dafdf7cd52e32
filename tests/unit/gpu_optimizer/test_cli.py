"""The `gpu-optimizer` command line, run in-process."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from gpu_optimizer.cli import app
from gpu_optimizer.profiling import MODELS, estimate, get_model_spec, model_source

runner = CliRunner()


def test_models_lists_the_registry() -> None:
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    names = {row["name"] for row in json.loads(result.output)}
    assert names == set(MODELS)
    assert {"resnet50", "yolo11n-pose", "gpt2"} <= names


def test_profile_json_matches_the_estimator() -> None:
    result = runner.invoke(
        app, ["profile", "gpt-tiny", "--batch", "2", "--input", "32", "--no-recommend", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    spec = get_model_spec("gpt-tiny")
    direct = estimate(
        model_source(spec),
        (32,),
        batch_size=2,
        input_dtype=torch.long,
        loss_fn=spec.loss_fn,
        optimizer="adamw",
    )
    assert data["peak_bytes"] == direct.peak_bytes
    assert data["model"] == "gpt-tiny"
    assert data["recommendations"] == []


def test_profile_table_shows_breakdown_and_recommendations() -> None:
    result = runner.invoke(
        app, ["profile", "gpt-tiny", "--batch", "2", "--input", "16", "--dtype", "bfloat16"]
    )
    assert result.exit_code == 0, result.output
    for heading in ("By kind", "By module", "Recommendations", "optimizer_offload"):
        assert heading in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["profile", "gpt-9000"], "valid:"),
        (["profile", "gpt-tiny", "--input", "3,x"], "comma-separated"),
        (["profile", "gpt-tiny", "--device", "cuda"], "CUDA"),
        (["profile", "gpt-tiny", "--optimizer", "lion"], "unknown optimizer"),
        (["find-batch", "gpt-tiny"], "--budget-gb"),
    ],
)
def test_bad_input_gives_a_clear_error(args: list[str], message: str) -> None:
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output


def test_find_batch_in_budget_mode() -> None:
    spec = get_model_spec("gpt-tiny")
    peak4 = estimate(
        model_source(spec), (16,), batch_size=4, input_dtype=torch.long, loss_fn=spec.loss_fn
    ).peak_bytes
    budget_gb = peak4 / 1024**3
    args = [
        "find-batch",
        "gpt-tiny",
        "--input",
        "16",
        "--budget-gb",
        repr(budget_gb),
        "--margin",
        "0",
        "--max",
        "4",
        "--json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["batch_size"] == 4
    assert [b for b, _ in data["probes"]] == [1, 2, 4]
    assert data["peak_bytes"][str(data["batch_size"])] <= data["budget_bytes"]


def test_checkpoints_subcommand_is_mounted() -> None:
    result = runner.invoke(app, ["checkpoints", "--help"])
    assert result.exit_code == 0, result.output
    assert "list" in result.output
