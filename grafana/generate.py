"""Generate the Grafana dashboards of both services with grafana-foundation-sdk.

The only source of grafana/dashboards/*.json: edit this file, then run
``python grafana/generate.py`` (``--check`` exits 1 when the committed JSON is stale).
Queries use the recording rules of prometheus/rules/ where one exists.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from grafana_foundation_sdk.builders.dashboard import Row
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

# The sibling modules, also when this file is loaded by its path (tests/unit/observability).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from fleet_row import with_fleet_row
from panels import (
    BOX,
    DASHBOARDS_DIR,
    GPU,
    INSTANCE,
    POSE,
    POSE_STREAM,
    base,
    box_variable,
    graph,
    numbered,
    single_stat,
    variable,
)


def pose_analyzer_dashboard() -> Dashboard:
    """Live streams of pose_analyzer: traffic, latency, inference, exercises and errors."""
    quantiles = [
        (f"instance:pose_stream_end_to_end_latency_seconds:{q}_rate1m{{{POSE}}}", f"{q} {{{{instance}}}}")
        for q in ("p50", "p95", "p99")
    ]
    per_stream_quantiles = [
        (f"stream:pose_stream_end_to_end_latency_seconds:{q}_rate1m{{{POSE_STREAM}}}", f"{q} {{{{stream}}}}")
        for q in ("p50", "p95")
    ]
    inference = [
        (f"instance_backend:pose_stream_inference_seconds:{q}_rate1m{{{POSE}}}", f"{q} {{{{backend}}}}")
        for q in ("p50", "p95", "p99")
    ]
    return numbered(
        with_fleet_row(
            base("pose-analyzer", "pose_analyzer", ["pose_analyzer", "aiml"])
            .with_variable(box_variable())
            .with_variable(
                variable(
                    "instance", "Instance", f"label_values(pose_stream_active_streams{{{BOX}}}, instance)"
                )
            )
        )
        .with_variable(
            variable(
                "stream",
                "Stream",
                f"label_values(pose_stream_frames_received_total{{{POSE}}}, stream)",
            )
        )
        .with_row(Row("Streams"))
        .with_panel(
            single_stat("Active streams", "none", f"sum(pose_stream_active_streams{{{POSE}}})", "streams")
        )
        .with_panel(
            single_stat(
                "Frames received per second",
                "fps",
                f"sum(rate(pose_stream_frames_received_total{{{POSE_STREAM}}}[$__rate_interval]))",
                "received",
            )
        )
        .with_panel(
            graph(
                "Processed vs dropped frames per stream",
                "fps",
                (
                    f"sum by (stream) (rate(pose_stream_frames_processed_total{{{POSE_STREAM}}}"
                    "[$__rate_interval]))",
                    "processed {{stream}}",
                ),
                (
                    f"sum by (stream) (rate(pose_stream_frames_dropped_total{{{POSE_STREAM}}}"
                    "[$__rate_interval]))",
                    "dropped {{stream}}",
                ),
                description="Dropped: replaced by a newer frame of the same stream before analysis.",
            )
        )
        .with_panel(
            graph(
                "End-to-end latency",
                "s",
                *quantiles,
                description="From a frame's arrival to its answer (recording rules over 1 minute).",
            )
        )
        .with_panel(
            graph(
                "End-to-end latency per stream",
                "s",
                *per_stream_quantiles,
                description='Streams beyond the service\'s label limit share the stream "other".',
            )
        )
        .with_row(Row("Inference"))
        .with_panel(graph("Inference time per detector call", "s", *inference))
        .with_panel(
            graph(
                "Frames per detector call and decode time",
                "none",
                (
                    f"sum(rate(pose_stream_batch_size_frames_sum{{{POSE}}}[$__rate_interval]))"
                    f" / sum(rate(pose_stream_batch_size_frames_count{{{POSE}}}[$__rate_interval]))",
                    "mean batch size",
                ),
                (
                    "histogram_quantile(0.95, sum by (le) "
                    f"(rate(pose_stream_decode_seconds_bucket{{{POSE}}}[$__rate_interval]))) * 1000",
                    "decode p95 (ms)",
                ),
            )
        )
        .with_row(Row("Exercises"))
        .with_panel(
            graph(
                "Repetitions by exercise",
                "none",
                (f"sum by (exercise) (pose_stream_reps_total{{{POSE}}})", "{{exercise}}"),
            )
        )
        .with_panel(
            graph(
                "Mean form score by exercise",
                "percent",
                (
                    f"sum by (exercise) (pose_stream_form_score_percent_sum{{{POSE}}})"
                    f" / sum by (exercise) (pose_stream_form_score_percent_count{{{POSE}}})",
                    "{{exercise}}",
                ),
            )
        )
        .with_row(Row("Errors"))
        .with_panel(
            graph(
                "WebSocket errors by reason",
                "none",
                (
                    "sum by (reason) "
                    f"(increase(pose_stream_websocket_errors_total{{{POSE}}}[$__rate_interval]))",
                    "{{reason}}",
                ),
            )
        )
        .build()
    )


def gpu_optimizer_dashboard() -> Dashboard:
    """Per-GPU state from NVML, swap pools, checkpoints and profiling jobs of gpu_optimizer."""
    return numbered(
        with_fleet_row(
            base("gpu-optimizer", "gpu_optimizer", ["gpu_optimizer", "aiml"])
            .with_variable(box_variable())
            .with_variable(
                variable("instance", "Instance", f"label_values(gpuopt_gpu_count{{{BOX}}}, instance)")
            )
            .with_variable(variable("gpu", "GPU", f"label_values(gpu_info{{{INSTANCE}}}, gpu)"))
        )
        .with_row(Row("GPUs"))
        .with_panel(single_stat("GPUs", "none", f"sum(gpuopt_gpu_count{{{INSTANCE}}})", "GPUs"))
        .with_panel(
            single_stat(
                "NVML read errors per second",
                "none",
                f"sum(rate(gpuopt_nvml_read_errors_total{{{INSTANCE}}}[$__rate_interval]))",
                "errors",
            )
        )
        .with_panel(
            graph(
                "Memory used and total",
                "bytes",
                (f"gpu_memory_used_bytes{{{GPU}}}", "used GPU {{gpu}}"),
                (f"gpu_memory_total_bytes{{{GPU}}}", "total GPU {{gpu}}"),
            )
        )
        .with_panel(
            graph(
                "Utilisation",
                "percentunit",
                (f"gpu_utilization_ratio{{{GPU}}}", "SM GPU {{gpu}}"),
                (f"gpu_memory_utilization_ratio{{{GPU}}}", "memory GPU {{gpu}}"),
            )
        )
        .with_panel(graph("Temperature", "celsius", (f"gpu_temperature_celsius{{{GPU}}}", "GPU {{gpu}}")))
        .with_panel(
            graph(
                "Power against limit",
                "watt",
                (f"gpu_power_watts{{{GPU}}}", "draw GPU {{gpu}}"),
                (f"gpu_power_limit_watts{{{GPU}}}", "limit GPU {{gpu}}"),
            )
        )
        .with_panel(
            graph(
                "Throttling reasons",
                "none",
                (f"max by (gpu, reason) (gpu_throttle_active{{{GPU}}})", "GPU {{gpu}} {{reason}}"),
                description="1 while the clock-event reason is active.",
            )
        )
        .with_row(Row("Swapping"))
        .with_panel(
            graph(
                "Swaps per second by tier",
                "none",
                (
                    f"sum by (tier, direction) (rate(gpuopt_swaps_total{{{INSTANCE}}}[$__rate_interval]))",
                    "{{tier}} {{direction}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Swap throughput and bytes held by tier",
                "bytes",
                (f"gpuopt_swap_throughput_bytes_per_second{{{INSTANCE}}}", "throughput/s {{pool}}"),
                (f"sum by (tier) (gpuopt_swap_pool_bytes{{{INSTANCE}}})", "held {{tier}}"),
            )
        )
        .with_row(Row("Checkpoints and profiling"))
        .with_panel(
            graph(
                "Checkpoint save and verify time",
                "s",
                (f"gpuopt_checkpoint_last_save_seconds{{{INSTANCE}}}", "save {{run}}"),
                (
                    "histogram_quantile(0.95, sum by (le) "
                    f"(rate(gpuopt_checkpoint_verify_seconds_bucket{{{INSTANCE}}}[$__rate_interval])))",
                    "verify p95",
                ),
            )
        )
        .with_panel(
            graph(
                "Checkpoint size",
                "bytes",
                (f"gpuopt_checkpoint_last_size_bytes{{{INSTANCE}}}", "newest {{run}}"),
                (f"gpuopt_checkpoint_bytes{{{INSTANCE}}}", "all kept {{run}}"),
            )
        )
        .with_panel(
            graph(
                "Profiling jobs by state",
                "none",
                (f"sum by (kind, state) (gpuopt_jobs_total{{{INSTANCE}}})", "{{kind}} {{state}}"),
            )
        )
        .with_row(Row("Training runs"))
        .with_panel(
            graph(
                "Training step",
                "none",
                (f"gpuopt_training_step{{{INSTANCE}}}", "{{run}}"),
                description="Optimizer steps reported by the training kit (the 20 most recent runs).",
            )
        )
        .with_panel(graph("Training loss", "none", (f"gpuopt_training_loss{{{INSTANCE}}}", "{{run}}")))
        .with_panel(
            graph(
                "Training throughput",
                "none",
                (f"gpuopt_training_samples_per_second{{{INSTANCE}}}", "samples/s {{run}}"),
            )
        )
        .with_panel(
            graph(
                "OOM recoveries, rollbacks and restarts",
                "none",
                (f"gpuopt_training_oom_events_total{{{INSTANCE}}}", "OOM {{run}}"),
                (f"gpuopt_training_rollbacks_total{{{INSTANCE}}}", "rollbacks {{run}}"),
                (f"gpuopt_training_restarts_total{{{INSTANCE}}}", "restarts {{run}}"),
                description="Totals per run: micro-batch halvings, rollbacks, torchrun group restarts.",
            )
        )
        .build()
    )


DASHBOARDS = {"pose_analyzer": pose_analyzer_dashboard, "gpu_optimizer": gpu_optimizer_dashboard}


def render(dashboard: Dashboard) -> str:
    """The dashboard as Grafana JSON, stable across runs (sorted keys, trailing newline)."""
    return json.dumps(dashboard, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed file differs")
    parser.add_argument("--out", type=Path, default=DASHBOARDS_DIR, help="folder to write into")
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path = args.out / f"{name}.json"
        text = render(build())
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    if stale:
        print(f"stale, run python grafana/generate.py: {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
