"""The small vocabulary every ``*.dashboard.py`` is written in, on top of grafanalib.

A dashboard file reads top to bottom like the dashboard it draws: its variables, then its rows
of panels. The helpers set what every panel must have (the ``$datasource`` data source, a unit,
a description), lay rows out on Grafana's 24-column grid, and override grafanalib's defaults
that Grafana 12 would reject or that the lint forbids (``schemaVersion`` 12, ``editable``,
``"datasource": null``; see ``build.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from grafanalib import core as g

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
# Grafana 11.6's dashboard model (grafana-foundation-sdk's default); panels and variables are
# written in that version's shape
SCHEMA_VERSION = 41

GREEN, YELLOW, RED, BLUE = "green", "#EAB839", "red", "blue"


@dataclass(frozen=True)
class Q:
    """One query of a panel: PromQL, its legend, instant (tables, stats) or range."""

    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False


def _targets(queries: Sequence[Q | str]) -> list[g.Target]:
    out = []
    for i, q in enumerate(queries):
        q = Q(q) if isinstance(q, str) else q
        out.append(
            g.Target(
                expr=q.expr,
                legendFormat=q.legend,
                refId=chr(ord("A") + i),
                instant=q.instant,
                format="table" if q.table else "time_series",
                datasource=DATASOURCE,
            )
        )
    return out


def steps(*pairs: tuple[float | None, str]) -> list[g.Threshold]:
    """Thresholds from ``(value, color)``; the first value is ``None`` (the base)."""
    return [
        g.Threshold(color, i, value if value is not None else 0.0)
        for i, (value, color) in enumerate(pairs)
    ]


def _thresholds(pairs: Sequence[tuple[float | None, str]]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in pairs]}


def _field(
    unit: str,
    thresholds: Sequence[tuple[float | None, str]] | None,
    minimum: float | None = None,
    maximum: float | None = None,
    mappings: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": unit}
    if thresholds:
        defaults["thresholds"] = _thresholds(thresholds)
        defaults["color"] = {"mode": "thresholds"}
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    if mappings:
        defaults["mappings"] = list(mappings)
    return {"fieldConfig": {"defaults": defaults, "overrides": []}}


@dataclass
class Panel:
    """A panel before layout: its grafanalib object and its width (of 24) and height."""

    panel: Any
    width: int = 0  # 0: share the row equally
    height: int = 8


def timeseries(
    title: str,
    description: str,
    *queries: Q | str,
    unit: str,
    stack: bool = False,
    thresholds: Sequence[tuple[float | None, str]] = (),
    minimum: float | None = 0,
    width: int = 0,
    height: int = 8,
    legend: str = "table",
    calcs: Sequence[str] = ("mean", "max", "lastNotNull"),
) -> Panel:
    """A time series panel: legend as a table with mean/max/last, unit on the axis."""
    extra = _field(unit, thresholds, minimum)
    extra["fieldConfig"]["defaults"]["custom"] = {
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        "fillOpacity": 20 if stack else 8,
        "lineWidth": 1,
        "showPoints": "never",
        "spanNulls": False,
    }
    extra["options"] = {
        "legend": {
            "displayMode": legend,
            "placement": "bottom",
            "calcs": list(calcs),
            "showLegend": True,
        },
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return Panel(
        g.TimeSeries(
            title=title,
            description=description,
            dataSource=DATASOURCE,
            targets=_targets(queries),
            unit=unit,
            extraJson=extra,
        ),
        width,
        height,
    )


def stat(
    title: str,
    description: str,
    *queries: Q | str,
    unit: str,
    thresholds: Sequence[tuple[float | None, str]] = ((None, GREEN),),
    width: int = 0,
    height: int = 4,
    graph: bool = False,
    mappings: Sequence[dict[str, Any]] = (),
) -> Panel:
    """A stat: the last value, coloured by ``thresholds``."""
    extra = _field(unit, thresholds, mappings=mappings)
    extra["options"] = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "value",
        "graphMode": "area" if graph else "none",
        "textMode": "auto",
        "justifyMode": "auto",
        "orientation": "auto",
    }
    return Panel(
        g.Stat(
            title=title,
            description=description,
            dataSource=DATASOURCE,
            targets=_targets(queries),
            format=unit,
            extraJson=extra,
            noValue="no data",
        ),
        width,
        height,
    )


def gauge(
    title: str,
    description: str,
    *queries: Q | str,
    unit: str,
    thresholds: Sequence[tuple[float | None, str]],
    minimum: float = 0,
    maximum: float = 100,
    width: int = 0,
    height: int = 6,
) -> Panel:
    """A gauge between ``minimum`` and ``maximum``."""
    extra = _field(unit, thresholds, minimum, maximum)
    extra["options"] = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "showThresholdMarkers": True,
        "showThresholdLabels": False,
    }
    return Panel(
        g.GaugePanel(
            title=title,
            description=description,
            dataSource=DATASOURCE,
            targets=_targets(queries),
            format=unit,
            extraJson=extra,
        ),
        width,
        height,
    )


def bars(
    title: str,
    description: str,
    *queries: Q | str,
    unit: str,
    thresholds: Sequence[tuple[float | None, str]] = ((None, GREEN),),
    width: int = 0,
    height: int = 8,
    maximum: float | None = None,
) -> Panel:
    """A horizontal bar gauge (top-N lists)."""
    extra = _field(unit, thresholds, 0, maximum)
    extra["options"] = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "orientation": "horizontal",
        "displayMode": "gradient",
        "showUnfilled": True,
        "valueMode": "color",
    }
    return Panel(
        g.BarGauge(
            title=title,
            description=description,
            dataSource=DATASOURCE,
            targets=_targets(queries),
            format=unit,
            extraJson=extra,
        ),
        width,
        height,
    )


def table(
    title: str,
    description: str,
    *queries: Q | str,
    unit: str = "none",
    hide: Sequence[str] = ("Time", "__name__", "instance", "job"),
    rename: dict[str, str] | None = None,
    width: int = 0,
    height: int = 8,
) -> Panel:
    """A table of instant results, one row per series, labels as columns."""
    qs = [
        Q(q.expr, q.legend, instant=True, table=True)
        if isinstance(q, Q)
        else Q(q, instant=True, table=True)
        for q in queries
    ]
    transformations: list[dict[str, Any]] = []
    if len(qs) > 1:
        transformations.append({"id": "merge", "options": {}})
    transformations.append(
        {
            "id": "organize",
            "options": {
                "excludeByName": {k: True for k in hide},
                "renameByName": dict(rename or {}),
            },
        }
    )
    extra = _field(unit, None)
    extra["options"] = {
        "showHeader": True,
        "cellHeight": "sm",
        "footer": {"show": False, "reducer": ["sum"], "fields": ""},
    }
    return Panel(
        g.Table(
            title=title,
            description=description,
            dataSource=DATASOURCE,
            targets=_targets(qs),
            unit=unit,
            transformations=transformations,
            extraJson=extra,
        ),
        width,
        height,
    )


def states(
    title: str,
    description: str,
    *queries: Q | str,
    mappings: Sequence[dict[str, Any]],
    width: int = 0,
    height: int = 8,
) -> Panel:
    """A state timeline: one lane per series, a colour per state value."""
    extra = _field("none", None, mappings=mappings)
    extra["options"] = {
        "mergeValues": True,
        "showValue": "never",
        "alignValue": "left",
        "rowHeight": 0.9,
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
    }
    return Panel(
        g.StateTimeline(
            title=title,
            description=description,
            dataSource=DATASOURCE,
            targets=_targets(queries),
            extraJson=extra,
        ),
        width,
        height,
    )


def value_map(values: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """A value mapping: ``{"1": ("running", "green"), ...}``."""
    return {
        "type": "value",
        "options": {
            v: {"text": text, "color": color, "index": i}
            for i, (v, (text, color)) in enumerate(values.items())
        },
    }


@dataclass
class Row:
    """A titled row of panels, laid out left to right, wrapping at 24 columns."""

    title: str
    panels: Sequence[Panel]
    collapsed: bool = False


@dataclass
class Var:
    """A template variable: a query variable (``label_values``/``query_result``) or the data
    source; chained variables refer to the ones before them."""

    name: str
    label: str
    query: str = ""
    multi: bool = False
    include_all: bool = False
    regex: str = ""
    kind: str = "query"
    hide: int = 0

    def template(self) -> g.Template:
        if self.kind == "datasource":
            return g.Template(
                name="datasource",
                type="datasource",
                query="prometheus",
                label="Data source",
                hide=self.hide,
            )
        if self.kind == "custom":
            return g.Template(
                name=self.name,
                type="custom",
                query=self.query,
                label=self.label,
                hide=self.hide,
                default=self.query.split(",")[0],
            )
        return g.Template(
            name=self.name,
            label=self.label,
            query=self.query,
            dataSource=DATASOURCE,
            refresh=2,
            multi=self.multi,
            includeAll=self.include_all,
            regex=self.regex,
            sort=1,
            hide=self.hide,
            allValue=".*" if self.include_all else None,
        )


def datasource() -> Var:
    """The ``datasource`` variable every dashboard starts with."""
    return Var("datasource", "Data source", kind="datasource")


@dataclass
class Spec:
    """What a ``*.dashboard.py`` declares."""

    uid: str
    title: str
    description: str
    tags: Sequence[str]
    variables: Sequence[Var]
    rows: Sequence[Row]
    links: Sequence[dict[str, Any]] = field(default_factory=list)
    time_from: str = "now-6h"
    refresh: str = "1m"
    audience: str = "operator"  # or "tenant": only tenant:* series, the tenant's Prometheus


def _layout(rows: Sequence[Row]) -> list[Any]:
    panels: list[Any] = []
    y = 0
    pid = 1
    for row in rows:
        panels.append(
            g.RowPanel(
                title=row.title,
                gridPos=g.GridPos(h=1, w=24, x=0, y=y),
                collapsed=row.collapsed,
                id=pid,
            )
        )
        pid += 1
        y += 1
        free = [p for p in row.panels if not p.width]
        fixed = sum(p.width for p in row.panels if p.width)
        share = max(1, (24 - fixed) // len(free)) if free and fixed < 24 else 24
        extra = (24 - fixed) - share * len(free) if free and fixed < 24 else 0
        x = 0
        line_h = 0
        for p in row.panels:
            w = p.width or share
            if not p.width and extra > 0:  # the remainder of 24 to the first free panels
                w += 1
                extra -= 1
            if x + w > 24:
                y += line_h
                x, line_h = 0, 0
            p.panel.gridPos = g.GridPos(h=p.height, w=w, x=x, y=y)
            p.panel.id = pid
            pid += 1
            panels.append(p.panel)
            x += w
            line_h = max(line_h, p.height)
        y += line_h
    return panels


def dashboard(spec: Spec) -> g.Dashboard:
    """The grafanalib dashboard of ``spec`` (``build.py`` writes it as Grafana JSON)."""
    return g.Dashboard(
        title=spec.title,
        uid=spec.uid,
        description=spec.description,
        tags=list(spec.tags),
        templating=g.Templating([v.template() for v in spec.variables]),
        panels=_layout(spec.rows),
        links=[g.DashboardLink(**link) for link in spec.links],
        time=g.Time(spec.time_from, "now"),
        refresh=spec.refresh,
        timezone="browser",
        editable=False,
        schemaVersion=SCHEMA_VERSION,
        graphTooltip=1,
        version=1,
    )
