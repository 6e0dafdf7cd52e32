"""Panel, query and variable builders shared by grafana/generate.py and grafana/fleet_row.py."""

from __future__ import annotations

from pathlib import Path

from grafana_foundation_sdk.builders import common, prometheus, stat, timeseries
from grafana_foundation_sdk.builders.dashboard import Dashboard as DashboardBuilder
from grafana_foundation_sdk.builders.dashboard import QueryVariable
from grafana_foundation_sdk.models.common import (
    BigValueColorMode,
    BigValueGraphMode,
    LegendDisplayMode,
    LegendPlacement,
)
from grafana_foundation_sdk.models.dashboard import (
    Dashboard,
    DataSourceRef,
    VariableRefresh,
    VariableSort,
)

DASHBOARDS_DIR = Path(__file__).resolve().parent / "dashboards"
# The datasource uid provisioned in grafana/provisioning/datasources/prometheus.yml.
DATASOURCE = DataSourceRef(type_val="prometheus", uid="prometheus")
FLEET_JOBS = "pose_analyzer|gpu_optimizer|haproxy"
# Every selector starts with the box (label set by deploy/prometheus/targets/*.json) and instance.
BOX = 'box=~"$box"'
INSTANCE = f'{BOX}, instance=~"$instance"'
POSE = INSTANCE
POSE_STREAM = f'{INSTANCE}, stream=~"$stream"'
GPU = f'{INSTANCE}, gpu=~"$gpu"'


def query(expr: str, legend: str, ref_id: str = "A") -> prometheus.Dataquery:
    """One range query on the provisioned Prometheus."""
    return (
        prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref_id).range().datasource(DATASOURCE)
    )


def graph(title: str, unit: str, *targets: tuple[str, str], description: str = "") -> timeseries.Panel:
    """A time series panel with one query per ``(expr, legend)``, lettered A, B, ..."""
    panel = (
        timeseries.Panel()
        .title(title)
        .unit(unit)
        .datasource(DATASOURCE)
        .height(8)
        .span(12)
        .line_width(1)
        .fill_opacity(10)
        .legend(
            common.VizLegendOptions()
            .show_legend(True)
            .display_mode(LegendDisplayMode.LIST)
            .placement(LegendPlacement.BOTTOM)
        )
    )
    if description:
        panel = panel.description(description)
    for index, (expr, legend) in enumerate(targets):
        panel = panel.with_target(query(expr, legend, chr(ord("A") + index)))
    return panel


def single_stat(title: str, unit: str, expr: str, legend: str) -> stat.Panel:
    """A stat panel showing the latest value of ``expr``."""
    return (
        stat.Panel()
        .title(title)
        .unit(unit)
        .datasource(DATASOURCE)
        .height(4)
        .span(6)
        .graph_mode(BigValueGraphMode.AREA)
        .color_mode(BigValueColorMode.VALUE)
        .with_target(query(expr, legend))
    )


def variable(name: str, label: str, label_query: str) -> QueryVariable:
    """A multi-value template variable filled by ``label_values(...)``, "All" meaning any value."""
    return (
        QueryVariable(name)
        .label(label)
        .query(label_query)
        .datasource(DATASOURCE)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )


def box_variable() -> QueryVariable:
    """The box label of every target of ours, the first variable of both dashboards."""
    return variable("box", "Box", f'label_values(up{{job=~"{FLEET_JOBS}"}}, box)')


def base(uid: str, title: str, tags: list[str]) -> DashboardBuilder:
    return (
        DashboardBuilder(title)
        .uid(uid)
        .tags(tags)
        .timezone("browser")
        .time("now-30m", "now")
        .refresh("10s")
        .editable()
    )


def numbered(dashboard: Dashboard) -> Dashboard:
    """Give every panel and row a distinct id, in layout order (the builder leaves rows at 0)."""
    for index, panel in enumerate(dashboard.panels or [], start=1):
        panel.id_val = index
    return dashboard
