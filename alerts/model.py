"""Rules as plain Python values, rendered to Prometheus rule files and promtool unit tests.

An :class:`Alert` carries its own test cases: series that must make it fire (with the labels the
page will carry) and series that must keep it quiet. From them the build writes a
``promtool test rules`` file that checks the boundary of ``for:`` (quiet one interval before it
elapses, firing one interval after) and the exact labels and annotations of the page.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["critical", "warning", "info"]
Area = Literal["compute", "storage", "network", "platform"]

_DURATION = re.compile(r"^(\d+)([smh])$")
_LABEL_REF = re.compile(r"\{\{\s*\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")


def seconds(duration: str) -> int:
    """``"5m"`` -> 300. Only the simple forms the rules here use."""
    m = _DURATION.match(duration)
    if not m:
        raise ValueError(f"unsupported duration {duration!r}")
    return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)]


def render_labels(template: str, labels: dict[str, str]) -> str:
    """Expand ``{{ $labels.x }}`` (the only template form our annotations use)."""
    return _LABEL_REF.sub(lambda m: labels.get(m.group(1), ""), template)


def sel(name: str, /, **labels: str) -> str:
    """A series selector for promtool input: ``name{a="b",...}`` (a label may be called
    ``name``)."""
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{name}{{{inner}}}"


@dataclass(frozen=True)
class Case:
    """One promtool scenario: input series (``{selector: values}``, 1m steps).

    ``fires`` are the labels of each alert expected once the condition has held for ``for:``
    (besides alertname/severity/area); an empty tuple means the rule must stay quiet.
    ``start`` is the minute from which the condition holds (a rate needs a few samples).
    """

    series: dict[str, str]
    fires: tuple[dict[str, str], ...] = ()
    start: int = 0
    note: str = ""


@dataclass(frozen=True)
class Alert:
    """An alerting rule with its routing labels, annotations, runbook and tests."""

    name: str
    expr: str
    for_: str
    severity: Severity
    area: Area
    summary: str
    description: str
    cases: tuple[Case, ...]
    labels: dict[str, str] = field(default_factory=dict)
    upstream: str = ""  # where the expression comes from when it is reused

    def __post_init__(self) -> None:
        if not any(c.fires for c in self.cases) or all(c.fires for c in self.cases):
            raise ValueError(f"{self.name}: needs a case that fires and one that stays quiet")
        seconds(self.for_)

    def runbook_url(self, base: str) -> str:
        return f"{base}/{self.area}.md#{self.name.lower()}"

    def rule(self, runbook_base: str, for_override: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "alert": self.name,
            "expr": self.expr,
            "for": for_override or self.for_,
            "labels": {"severity": self.severity, "area": self.area, **self.labels},
            "annotations": {
                "summary": self.summary,
                "description": self.description,
                "runbook_url": self.runbook_url(runbook_base),
            },
        }
        return out

    def expected(self, labels: dict[str, str], runbook_base: str) -> dict[str, Any]:
        """What promtool must see for one firing alert with ``labels``."""
        all_labels = {**labels, "severity": self.severity, "area": self.area, **self.labels}
        return {
            # an empty label is no label in Prometheus
            "exp_labels": {k: v for k, v in all_labels.items() if v != ""},
            "exp_annotations": {
                "summary": render_labels(self.summary, all_labels),
                "description": render_labels(self.description, all_labels),
                "runbook_url": self.runbook_url(runbook_base),
            },
        }


@dataclass(frozen=True)
class Recording:
    """A recording rule."""

    record: str
    expr: str

    def rule(self) -> dict[str, Any]:
        return {"record": self.record, "expr": self.expr}


@dataclass(frozen=True)
class Group:
    """A rule group: evaluated together, in order."""

    name: str
    rules: tuple[Alert | Recording, ...]
    interval: str | None = None

    @property
    def alerts(self) -> list[Alert]:
        return [r for r in self.rules if isinstance(r, Alert)]


def rule_file(
    groups: Iterable[Group], runbook_base: str, for_override: str | None = None
) -> dict[str, Any]:
    """A Prometheus rule file (``groups:``) for ``groups``."""
    out = []
    for g in groups:
        body: dict[str, Any] = {"name": g.name}
        if g.interval:
            body["interval"] = g.interval
        body["rules"] = [
            r.rule(runbook_base, for_override) if isinstance(r, Alert) else r.rule()
            for r in g.rules
        ]
        out.append(body)
    return {"groups": out}


def promtool_tests(
    groups: Iterable[Group], rule_files: list[str], runbook_base: str
) -> dict[str, Any]:
    """A ``promtool test rules`` file: for every case of every alert, one test group that
    checks the alert is quiet one minute before ``for:`` elapses and, for a firing case, that
    it fires with exactly the expected labels and annotations one minute after."""
    tests = []
    for g in groups:
        for alert in g.alerts:
            hold = seconds(alert.for_) // 60
            for n, case in enumerate(alert.cases):
                before = case.start + hold - 1
                after = case.start + hold + 1
                checks: list[dict[str, Any]] = []
                if before >= 0:
                    checks.append(
                        {"eval_time": f"{before}m", "alertname": alert.name, "exp_alerts": []}
                    )
                checks.append(
                    {
                        "eval_time": f"{after}m",
                        "alertname": alert.name,
                        "exp_alerts": [
                            alert.expected(labels, runbook_base) for labels in case.fires
                        ],
                    }
                )
                note = case.note or ("fires" if case.fires else "quiet")
                tests.append(
                    {
                        "name": f"{alert.name} case {n}: {note}",
                        "interval": "1m",
                        "input_series": [
                            {"series": s, "values": v} for s, v in case.series.items()
                        ],
                        "alert_rule_test": checks,
                    }
                )
    return {"rule_files": rule_files, "evaluation_interval": "1m", "tests": tests}
