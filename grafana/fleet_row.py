"""The fleet overview row both dashboards open with: every box, every GPU, every replica, HAProxy.

Series are told apart by the ``box`` label that deploy/prometheus/targets/*.json gives each target
(scripts/fleet_targets.py) and filtered by the dashboards' ``$box`` variable only, so the row shows
the whole fleet whatever instance the rest of the dashboard looks at. The GPU panels read
gpu_optimizer's per-GPU series (none on a box without a GPU); HAProxy's come from its built-in
Prometheus exporter (``haproxy_backend_*``, ``haproxy_server_*``).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard as DashboardBuilder
from grafana_foundation_sdk.builders.dashboard import Row
from panels import BOX, FLEET_JOBS, graph, single_stat

TARGETS = f'job=~"{FLEET_JOBS}", {BOX}'
# Titles of the row's panels whose series exist only on a box with a GPU.
GPU_ONLY_TITLES = frozenset(
    {
        "Fleet: GPU memory used and total",
        "Fleet: GPU utilisation",
        "Fleet: GPU temperature",
        "Fleet: GPU alerts and health",
    }
)
# ... and those that only a box running HAProxy has.
HAPROXY_TITLES = frozenset({"Fleet: HAProxy servers up", "Fleet: HAProxy backend sessions and 5xx"})


def with_fleet_row(board: DashboardBuilder) -> DashboardBuilder:
    """``board`` with the "Fleet overview" row and its panels appended."""
    gpu = "{{box}} GPU {{gpu}}"
    return (
        board.with_row(Row("Fleet overview"))
        .with_panel(
            single_stat(
                "Fleet: firing alerts per box",
                "none",
                f'count by (box) (ALERTS{{alertstate="firing", {BOX}}})'
                f" or 0 * count by (box) (up{{{TARGETS}}})",
                "{{box}}",
            ).span(8)
        )
        .with_panel(
            single_stat(
                "Fleet: GPUs per box", "none", f"sum by (box) (gpuopt_gpu_count{{{BOX}}})", "{{box}}"
            ).span(8)
        )
        .with_panel(
            single_stat(
                "Fleet: targets answering per box",
                "percentunit",
                f"sum by (box) (up{{{TARGETS}}}) / count by (box) (up{{{TARGETS}}})",
                "{{box}}",
            ).span(8)
        )
        .with_panel(
            graph(
                "Fleet: GPU memory used and total",
                "bytes",
                (f"gpu_memory_used_bytes{{{BOX}}}", f"used {gpu}"),
                (f"gpu_memory_total_bytes{{{BOX}}}", f"total {gpu}"),
            )
        )
        .with_panel(graph("Fleet: GPU utilisation", "percentunit", (f"gpu_utilization_ratio{{{BOX}}}", gpu)))
        .with_panel(graph("Fleet: GPU temperature", "celsius", (f"gpu_temperature_celsius{{{BOX}}}", gpu)))
        .with_panel(
            graph(
                "Fleet: GPU alerts and health",
                "none",
                (
                    f"sum by (box, gpu, kind, severity) (gpu_alerts{{{BOX}}})",
                    f"{gpu} {{{{kind}}}} {{{{severity}}}}",
                ),
                (f"max by (box, gpu) (gpu_health_status{{{BOX}}})", f"health {gpu}"),
                description="gpu_optimizer's alerts by kind and severity; health 0 ok, 1 warning, 2 critical",
            )
        )
        .with_panel(
            graph(
                "Fleet: active streams per replica",
                "none",
                (f"sum by (box, instance) (pose_stream_active_streams{{{BOX}}})", "{{box}} {{instance}}"),
            )
        )
        .with_panel(
            graph(
                "Fleet: processed frames per second per replica",
                "fps",
                (
                    "sum by (box, instance) "
                    f"(rate(pose_stream_frames_processed_total{{{BOX}}}[$__rate_interval]))",
                    "{{box}} {{instance}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Fleet: p95 end-to-end latency per replica",
                "s",
                (
                    f"instance:pose_stream_end_to_end_latency_seconds:p95_rate1m{{{BOX}}}",
                    "{{box}} {{instance}}",
                ),
                description="Recording rule over 1 minute (prometheus/rules/pose_recording.yml).",
            )
        )
        .with_panel(
            graph(
                "Fleet: HAProxy servers up",
                "none",
                (
                    f"sum by (box, proxy) (haproxy_backend_active_servers{{{BOX}}})",
                    "active {{box}} {{proxy}}",
                ),
                (
                    f'max by (box, proxy, server) (haproxy_server_status{{{BOX}, state="UP"}})',
                    "up {{box}} {{proxy}}/{{server}}",
                ),
                description="Replicas HAProxy's /readyz checks find ready, per backend and per server.",
            )
        )
        .with_panel(
            graph(
                "Fleet: HAProxy backend sessions and 5xx",
                "none",
                (
                    f"sum by (box, proxy) (haproxy_backend_current_sessions{{{BOX}}})",
                    "sessions {{box}} {{proxy}}",
                ),
                (
                    f'sum by (box, proxy) (rate(haproxy_backend_http_responses_total{{{BOX}, code="5xx"}}'
                    "[$__rate_interval]))",
                    "5xx/s {{box}} {{proxy}}",
                ),
            )
        )
    )
