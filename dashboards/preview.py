"""``zcp-obs dashboards preview``: each dashboard drawn to one PNG from its panels' live query
results (matplotlib), laid out on Grafana's 24-column grid with titles, units and legends, so a
person can see what a dashboard shows without a Grafana server.

Variables take the values the panel proof settles on (``proof.Prover.prove``). Time series and
state timelines draw the range results; stats, gauges, bar gauges and tables the instant ones.
Each PNG comes with a manifest of where every panel was drawn (pixels) and whether it had data,
so the tests can check the pixels, not only that a file exists.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from prometheus_api_client import PrometheusApiClientException

from dashboards.build import Built, panels
from dashboards.proof import Prover, Window, substitute
from zcp.files import write_atomic

WIDTH_IN = 16.0  # the figure's width: 24 grid columns
ROW_IN = 0.34  # one grid row (Grafana: 30 px)
DPI = 80
BACKGROUND = "#111217"  # Grafana's dark theme
PANEL = "#181b1f"
TEXT = "#ccccdc"
PALETTE = [
    "#73bf69",
    "#f2cc0c",
    "#8ab8ff",
    "#ff780a",
    "#f2495c",
    "#5794f2",
    "#b877d9",
    "#ff9830",
    "#fade2a",
    "#37872d",
]
BINARY = ("bytes", "Bps")
NAMED = {"green": "#73bf69", "red": "#f2495c", "yellow": "#f2cc0c", "blue": "#5794f2"}


@dataclass(frozen=True)
class Drawn:
    """Where a panel was drawn in the PNG (pixels from the top left) and what it showed."""

    title: str
    kind: str
    box: tuple[int, int, int, int]  # left, top, right, bottom
    series: int


def fmt(value: float, unit: str) -> str:
    """A value in a panel's unit, as Grafana would print it (the common units)."""
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if unit in BINARY:
        suffix = "/s" if unit == "Bps" else ""
        for name in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
            if abs(value) < 1024 or name == "PiB":
                return f"{value:.4g} {name}{suffix}"
            value /= 1024
    if unit == "percent":
        return f"{value:.3g}%"
    if unit == "percentunit":
        return f"{value * 100:.3g}%"
    if unit == "s":
        for name, size in (("d", 86400), ("h", 3600), ("min", 60)):
            if abs(value) >= size:
                return f"{value / size:.3g} {name}"
        return f"{value * 1000:.3g} ms" if 0 < abs(value) < 1 else f"{value:.3g} s"
    if unit == "dateTimeAsIso":
        return datetime.fromtimestamp(value / 1000, UTC).strftime("%Y-%m-%d %H:%M")
    suffix = {"iops": " io/s", "pps": " p/s", "reqps": " req/s"}.get(unit, "")
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{prefix}{suffix}"
    return f"{value:.3g}{suffix}"


def _legend(template: str, metric: dict[str, str]) -> str:
    if not template:
        inner = ",".join(f'{k}="{v}"' for k, v in sorted(metric.items()) if k != "__name__")
        return f"{metric.get('__name__', '')}{{{inner}}}"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), template)


def _color(value: float, steps: Sequence[dict[str, Any]], fallback: str) -> str:
    color = fallback
    for step in steps:
        if step.get("value") is None or value >= float(step["value"]):
            color = str(step.get("color", fallback))
    return NAMED.get(color, color)


def _style(ax: Axes) -> None:
    ax.set_facecolor(PANEL)
    for spine in ax.spines.values():
        spine.set_color("#2c3235")
    ax.tick_params(colors=TEXT, labelsize=7)


class Renderer:
    """Draws dashboards from one Prometheus-compatible query API."""

    def __init__(self, url: str, window: Window) -> None:
        self.prover = Prover(url, window)
        self.window = window

    def _results(
        self, panel: dict[str, Any], values: dict[str, str], instant: bool
    ) -> list[tuple[str, list[tuple[float, float]]]]:
        out = []
        hidden: set[str] = set()
        renamed: dict[str, str] = {}
        for t in panel.get("transformations", []):
            if t.get("id") == "organize":
                hidden |= set(t.get("options", {}).get("excludeByName", {}))
                renamed.update(t.get("options", {}).get("renameByName", {}))
        for target in panel.get("targets", []):
            expr = target.get("expr")
            if not expr:
                continue
            try:
                result = self.prover.run(substitute(expr, values), instant)
            except PrometheusApiClientException:  # drawn as "No data"; the proof checks it
                continue
            for item in result:
                points = item.get("values") or [item["value"]]
                if panel.get("type") == "table":  # its columns: the labels not hidden
                    name = "  ".join(
                        f"{k}={v}"
                        for k, v in sorted(item["metric"].items())
                        if k not in hidden and k != "__name__"
                    )
                    # every label hidden: the value's column header names it, as in Grafana
                    ref = target.get("refId", "")
                    name = name or renamed.get(f"Value #{ref}", ref)
                else:
                    name = _legend(target.get("legendFormat", ""), item["metric"])
                out.append((name, [(float(t), float(v)) for t, v in points]))
        return out

    def draw(self, built: Built, out: Path) -> list[Drawn]:
        """``out/<uid>.png`` and ``out/<uid>.json`` (the manifest); the panels drawn."""
        doc = built.doc
        # the variables' values the panel proof found to show every panel (or came closest)
        values = {**self.window.builtins(), **self.prover.prove(built).values}
        items = list(panels(doc))
        rows = max((p["gridPos"]["y"] + p["gridPos"]["h"] for p in items), default=1)
        height = rows * ROW_IN + 0.6
        fig = plt.figure(figsize=(WIDTH_IN, height), dpi=DPI, facecolor=BACKGROUND)
        shown = {k: v for k, v in values.items() if not k.startswith("__")}
        fig.text(
            0.01,
            1 - 0.3 / height,
            f"{doc.get('title', '')}   " + "  ".join(f"{k}={v}" for k, v in shown.items()),
            color=TEXT,
            fontsize=11,
            va="center",
            weight="bold",
        )
        drawn = []
        for panel in items:
            pos = panel["gridPos"]
            left = pos["x"] / 24 + 0.004
            width = pos["w"] / 24 - 0.008
            top = (0.6 + pos["y"] * ROW_IN) / height
            h = pos["h"] * ROW_IN / height
            kind = panel.get("type", "")
            if kind == "row":
                fig.text(
                    left,
                    1 - top - h / 2,
                    panel.get("title", ""),
                    color=TEXT,
                    fontsize=10,
                    va="center",
                    weight="bold",
                )
                continue
            # the panel's box below its title line (0.3 in), a little apart from the next
            kind_has_axis = kind in ("timeseries", "state-timeline")
            gutter = 0.045 if kind_has_axis else 0.0  # room for the y tick labels
            ax = fig.add_axes(
                (
                    left + gutter * width,
                    1 - top - h + 0.08 / height,
                    width * (1 - gutter),
                    h - 0.38 / height,
                )
            )
            _style(ax)
            ax.set_title(panel.get("title", ""), color=TEXT, fontsize=8, loc="left")
            unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "none")
            steps = (
                panel.get("fieldConfig", {})
                .get("defaults", {})
                .get("thresholds", {})
                .get("steps", [])
            )
            instant = kind in ("stat", "gauge", "bargauge", "table")
            series = self._results(panel, values, instant)
            mappings = panel.get("fieldConfig", {}).get("defaults", {}).get("mappings", [])
            self._panel(ax, kind, series, unit, steps, mappings)
            bbox = ax.get_window_extent()
            x0, x1 = bbox.x0, bbox.x1
            y0, y1 = fig.bbox.height - bbox.y1, fig.bbox.height - bbox.y0
            drawn.append(
                Drawn(
                    panel.get("title", ""),
                    kind,
                    (round(x0), round(y0), round(x1), round(y1)),
                    len(series),
                )
            )
        out.mkdir(parents=True, exist_ok=True)
        png = out / f"{built.uid}.png"
        tmp = out / f".{built.uid}.png.tmp"
        fig.savefig(tmp, dpi=DPI, facecolor=BACKGROUND, format="png")
        plt.close(fig)
        tmp.replace(png)
        write_atomic(
            out / f"{built.uid}.json",
            json.dumps(
                {"uid": built.uid, "variables": shown, "panels": [asdict(d) for d in drawn]},
                indent=2,
                sort_keys=True,
            )
            + "\n",
        )
        return drawn

    def _panel(
        self,
        ax: Axes,
        kind: str,
        series: list[tuple[str, list[tuple[float, float]]]],
        unit: str,
        steps: Sequence[dict[str, Any]],
        mappings: Sequence[dict[str, Any]] = (),
    ) -> None:
        if not series:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.text(
                0.5,
                0.5,
                "No data",
                color="#8e8e8e",
                ha="center",
                va="center",
                transform=ax.transAxes,
                fontsize=9,
            )
            return
        if kind in ("timeseries", "state-timeline"):
            for i, (name, points) in enumerate(series[:10]):
                xs: Any = [datetime.fromtimestamp(t, UTC) for t, _v in points]
                ys = [v for _t, v in points]
                ax.plot(
                    xs,
                    ys,
                    color=PALETTE[i % len(PALETTE)],
                    linewidth=1.4,
                    label=name[:40],
                    drawstyle="steps-post" if kind != "timeseries" else "default",
                    marker="o" if len(points) < 20 else None,
                    markersize=4,
                )
            ax.set_xlim(mdates.date2num(self.window.start), mdates.date2num(self.window.end))
            ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
            ax.yaxis.set_major_formatter(
                matplotlib.ticker.FuncFormatter(lambda v, _p: fmt(v, unit))
            )
            legend = ax.legend(fontsize=6, loc="upper left", frameon=False, ncol=2)
            for text in legend.get_texts():
                text.set_color(TEXT)
            return
        ax.set_xticks([])
        ax.set_yticks([])
        last = [(name, points[-1][1]) for name, points in series]
        if kind in ("stat", "gauge"):
            name, value = last[0]
            color = _color(value, steps, PALETTE[0])
            shown = fmt(value, unit)
            for mapping in mappings:  # value mappings, as Grafana applies them
                hit = mapping.get("options", {}).get(
                    shown if mapping.get("type") == "value" else "", None
                )
                if hit is None and not math.isnan(value) and value == int(value):
                    hit = mapping.get("options", {}).get(str(int(value)))
                if hit:
                    shown = str(hit.get("text", shown))
                    color = NAMED.get(str(hit.get("color", "")), hit.get("color", color))
            ax.text(
                0.5,
                0.45,
                shown,
                color=color,
                ha="center",
                va="center",
                transform=ax.transAxes,
                fontsize=18,
                weight="bold",
            )
            if kind == "gauge":
                ax.barh(
                    [0.1],
                    [min(max(value, 0), 100) / 100],
                    height=0.08,
                    color=color,
                    transform=ax.transAxes,
                )
            return
        if kind == "bargauge":
            top = sorted(last, key=lambda x: -x[1] if not math.isnan(x[1]) else 0)[:8]
            peak = max((v for _n, v in top if not math.isnan(v)), default=1) or 1
            for i, (name, value) in enumerate(top):
                y = 1 - (i + 1) / (len(top) + 1)
                color = _color(value, steps, PALETTE[0])
                bar = 0.6 / (len(top) + 1)
                ax.barh(
                    [y], [0.5], height=bar, left=0.35, color="#2c3235", transform=ax.transAxes
                )  # the unfilled track
                ax.barh(
                    [y],
                    [max(value, 0) / peak * 0.5],
                    height=bar,
                    left=0.35,
                    color=color,
                    transform=ax.transAxes,
                )
                ax.text(
                    0.01, y, name[:28], color=TEXT, fontsize=7, va="center", transform=ax.transAxes
                )
                ax.text(
                    0.97,
                    y,
                    fmt(value, unit),
                    color=color,
                    fontsize=8,
                    va="center",
                    ha="right",
                    transform=ax.transAxes,
                    weight="bold",
                )
            return
        # table: one line per series, its labels and value
        for i, (name, value) in enumerate(last[:12]):
            ax.text(
                0.01,
                0.92 - i * 0.075,
                f"{name[:150]}  {fmt(value, unit)}",
                color=TEXT,
                fontsize=6,
                va="center",
                transform=ax.transAxes,
                family="monospace",
            )


def preview_all(
    built: Sequence[Built], url: str, out: Path, window: Window, audience: str
) -> dict[str, list[Drawn]]:
    """Every dashboard of ``audience`` drawn into ``out``."""
    renderer = Renderer(url, window)
    return {b.uid: renderer.draw(b, out) for b in built if b.audience == audience}
