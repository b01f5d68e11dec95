"""The rules of Grafana's dashboard-linter that fit this project, ported (the linter is a Go
binary offered only as release downloads), plus our own: modern panel types only, tenant
dashboards use only ``tenant:*`` series.

Every PromQL query is parsed with a real PromQL parser (``promql-parser``, the Rust crate's
Python binding) after Grafana's built-in variables are replaced by sentinel durations, as the
linter does (``lint/variables.go``). Exceptions live in ``lint-exceptions.yaml`` next to this
file, each with a reason, as the mixins keep theirs in ``.lint``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import promql_parser
import yaml

from dashboards.build import Built, DashboardError, panels

EXCEPTIONS = Path(__file__).resolve().parent / "lint-exceptions.yaml"
# Grafana's built-in range variables -> sentinel durations the parser accepts
RATE_SENTINEL = timedelta(seconds=7777)
BUILTINS = {
    "$__rate_interval": "7777s",
    "${__rate_interval}": "7777s",
    "$__interval": "6666s",
    "${__interval}": "6666s",
    "$__range": "8888s",
    "${__range}": "8888s",
}
COUNTER_FUNCS = {"rate", "irate", "increase", "resets"}
RATE_FUNCS = {"rate", "irate", "increase"}
MODERN = {
    "row",
    "timeseries",
    "stat",
    "gauge",
    "bargauge",
    "table",
    "state-timeline",
    "text",
    "heatmap",
    "histogram",
    "barchart",
    "piechart",
    "logs",
    "status-history",
}
NO_QUERY = {"row", "text"}
MIN_SCHEMA = 36  # Grafana 9.x and later: what Grafana 12 migrates without Angular


@dataclass(frozen=True)
class Problem:
    """One rule broken: where and why."""

    rule: str
    dashboard: str
    panel: str
    message: str

    def __str__(self) -> str:
        where = f"{self.dashboard}" + (f" / {self.panel}" if self.panel else "")
        return f"{where}: {self.rule}: {self.message}"


def substitute(expr: str) -> str:
    """``expr`` with Grafana's built-in range variables replaced by sentinel durations."""
    for k, v in BUILTINS.items():
        expr = expr.replace(k, v)
    return expr


def parse(expr: str) -> Any:
    """The PromQL AST of a panel query (ValueError when it does not parse)."""
    return promql_parser.parse(substitute(expr))


def walk(node: Any, parents: tuple[Any, ...] = ()) -> Iterator[tuple[Any, tuple[Any, ...]]]:
    """Every node of an AST with its ancestors."""
    yield node, parents
    here = (*parents, node)
    for attr in ("lhs", "rhs", "expr", "param", "vector_selector"):
        child = getattr(node, attr, None)
        if child is not None and not isinstance(child, (str, int, float)):
            yield from walk(child, here)
    for arg in getattr(node, "args", None) or ():
        yield from walk(arg, here)


def metric_names(expr: str) -> list[str]:
    """The metric names a query selects."""
    return [
        n.name for n, _p in walk(parse(expr)) if type(n).__name__ == "VectorSelector" and n.name
    ]


def _call_name(node: Any) -> str:
    return node.func.name if type(node).__name__ == "Call" else ""


def check_expr(expr: str) -> list[tuple[str, str]]:
    """(rule, message) for one query."""
    try:
        ast = parse(expr)
    except ValueError as exc:
        return [("target-promql-rule", f"does not parse: {exc}: {expr}")]
    out = []
    for node, parents in walk(ast):
        kind = type(node).__name__
        if kind == "Call" and _call_name(node) in RATE_FUNCS:
            arg: Any = node.args[0] if node.args else None
            if type(arg).__name__ == "MatrixSelector" and arg.range != RATE_SENTINEL:
                out.append(
                    (
                        "target-rate-interval-rule",
                        f"{_call_name(node)}() over {arg.range}, not $__rate_interval: {expr}",
                    )
                )
        if kind == "VectorSelector" and (node.name or "").endswith("_total"):
            calls = {_call_name(p) for p in parents}
            if not calls & COUNTER_FUNCS:
                out.append(
                    (
                        "target-counter-agg-rule",
                        f"counter {node.name} not inside rate/irate/increase: {expr}",
                    )
                )
    return out


@dataclass(frozen=True)
class VariableQuery:
    """A query variable's query, parsed: ``kind`` is ``label_values`` (``promql`` the series
    selector, or None for ``label_values(label)``) or ``query_result`` (``promql`` the query);
    ``label`` the label whose values are taken."""

    kind: str
    promql: str | None = None
    label: str = ""


LABEL_VALUES = re.compile(r"\s*label_values\((?:(.*),)?\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*", re.S)
QUERY_RESULT = re.compile(r"\s*query_result\((.*)\)\s*", re.S)


def parse_variable(query: str) -> VariableQuery | None:
    """A variable query as Grafana's Prometheus data source reads it; None if unknown."""
    m = LABEL_VALUES.fullmatch(query)
    if m:
        return VariableQuery("label_values", m.group(1), m.group(2))
    m = QUERY_RESULT.fullmatch(query)
    if m:
        return VariableQuery("query_result", m.group(1))
    return None


def variable_query(query: str) -> str | None:
    """The PromQL inside a variable query (``label_values(q, l)``, ``query_result(q)``), or
    None for ``label_values(l)`` / ``label_names()``."""
    parsed = parse_variable(query)
    return parsed.promql if parsed is not None else None


def _targets(panel: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in panel.get("targets", []) if t.get("expr")]


def check(built: Built) -> list[Problem]:
    """Every rule on one dashboard."""
    doc, uid = built.doc, built.uid
    out: list[Problem] = []

    def bad(rule: str, panel: str, message: str) -> None:
        out.append(Problem(rule, uid, panel, message))

    if doc.get("editable", True):
        bad("uneditable-dashboard", "", "the dashboard is editable")
    if int(doc.get("schemaVersion", 0)) < MIN_SCHEMA:
        bad("schema-version", "", f"schemaVersion {doc.get('schemaVersion')} < {MIN_SCHEMA}")
    variables = doc.get("templating", {}).get("list", [])
    ds = [v for v in variables if v.get("type") == "datasource"]
    if not ds or ds[0].get("name") != "datasource" or ds[0].get("label") != "Data source":
        bad("template-datasource-rule", "", "no `datasource` variable labelled 'Data source'")
    for v in variables:
        if v.get("type") != "query":
            continue
        if v.get("refresh") != 2:
            bad(
                "template-on-time-change-reload-rule",
                "",
                f"variable ${v['name']} is not refreshed on time-range change",
            )
        if (v.get("datasource") or {}).get("uid") != "${datasource}":
            bad("template-datasource-rule", "", f"variable ${v['name']} does not query $datasource")
        inner = variable_query(str(v.get("query", "")))
        if inner is not None:
            try:
                parse(inner)
            except ValueError as exc:
                bad("template-label-promql-rule", "", f"variable ${v['name']}: {exc}")
    for panel in panels(doc):
        title = panel.get("title", "")
        kind = panel.get("type", "")
        if kind not in MODERN:
            bad("panel-type", title, f"{kind!r} is not a current panel type")
        if kind in NO_QUERY:
            continue
        if not title or not panel.get("description"):
            bad("panel-title-description-rule", title, "a panel needs a title and a description")
        if not panel.get("fieldConfig", {}).get("defaults", {}).get("unit"):
            bad("panel-units-rule", title, "no unit")
        if (panel.get("datasource") or {}).get("uid") != "${datasource}":
            bad("panel-datasource-rule", title, "the panel does not use $datasource")
        targets = _targets(panel)
        if not targets:
            bad("panel-no-targets-rule", title, "no queries")
        for t in targets:
            if (t.get("datasource") or {}).get("uid") != "${datasource}":
                bad(
                    "panel-datasource-rule",
                    title,
                    f"query {t.get('refId')} does not use $datasource",
                )
            for rule, message in check_expr(t["expr"]):
                bad(rule, title, message)
            if built.audience == "tenant":
                try:
                    names = metric_names(t["expr"])
                except ValueError:
                    continue
                for name in names:
                    if not name.startswith("tenant:"):
                        bad(
                            "tenant-series-rule",
                            title,
                            f"{name} is not a tenant:* series "
                            "(a tenant's Prometheus holds only those)",
                        )
    return out


@dataclass(frozen=True)
class Exception_:
    """A rule waived for a dashboard (and panel), with the reason."""

    rule: str
    dashboard: str
    panel: str
    reason: str

    def covers(self, p: Problem) -> bool:
        return self.rule == p.rule and self.dashboard == p.dashboard and self.panel in ("", p.panel)


def exceptions(path: Path = EXCEPTIONS) -> list[Exception_]:
    """The waived rules (every entry must give a reason)."""
    if not path.exists():
        return []
    data = yaml.safe_load(path.read_text()) or []
    out = []
    for i, e in enumerate(data):
        if not isinstance(e, dict) or not e.get("reason") or not e.get("rule"):
            raise DashboardError(f"{path.name}: entry {i + 1} needs a rule and a reason")
        out.append(Exception_(e["rule"], e.get("dashboard", ""), e.get("panel", ""), e["reason"]))
    return out


def lint(built: list[Built], waived: list[Exception_] | None = None) -> list[Problem]:
    """Every problem of every dashboard that no exception covers."""
    waived = exceptions() if waived is None else waived
    return [p for b in built for p in check(b) if not any(e.covers(p) for e in waived)]
