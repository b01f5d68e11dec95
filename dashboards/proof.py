"""The panel proof: every variable and panel query of a dashboard run against a real
Prometheus, so a panel that would say "No data" fails before a customer sees it.

Variables are resolved in order, as Grafana does: each query variable's own query (with the
earlier variables substituted) is asked of the source, and a real value from its answer is used
(multi-value and "All" variables get a regex-escaped value, as Grafana formats them). A
dashboard is proven for the first combination of answers (up to three per variable, fewest
changes from the first answers first) whose panels all show data; the problems reported are
those of the best combination tried. Grafana's built-in variables
get the values Grafana would compute for the given range.

Tenant dashboards run against a tenant's own Prometheus: every series a query returns that
carries a ``tenant`` label must carry that tenant's id.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import requests
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect

from dashboards.build import Built, DashboardError, panels
from dashboards.lint import Problem, parse_variable

TRIES = 3  # answers tried per query variable
COMBINATIONS = 10  # combinations of answers tried per dashboard, at most


@dataclass(frozen=True)
class Window:
    """The time range a dashboard is proven over, and Grafana's built-ins for it."""

    end: datetime
    span: timedelta = timedelta(minutes=10)
    rate_interval: str = "1m"
    step: str = "15s"

    @property
    def start(self) -> datetime:
        return self.end - self.span

    def builtins(self) -> dict[str, str]:
        span = f"{int(self.span.total_seconds())}s"
        return {"__rate_interval": self.rate_interval, "__interval": self.step, "__range": span}


@dataclass
class Proof:
    """What one dashboard's proof found."""

    uid: str
    values: dict[str, str] = field(default_factory=dict)
    queries: int = 0
    problems: list[Problem] = field(default_factory=list)


def _escape(value: str) -> str:
    """A value as Grafana formats a multi-value variable inside a regex matcher."""
    return re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\\\1", value)


def substitute(text: str, values: dict[str, str]) -> str:
    """``$name`` and ``${name}`` replaced, longest names first."""
    for name in sorted(values, key=len, reverse=True):
        text = text.replace("${" + name + "}", values[name]).replace("$" + name, values[name])
    return text


class Prover:
    """Runs the proofs against one Prometheus-compatible query API."""

    def __init__(
        self, url: str, window: Window, timeout: float = 30, tenant: str | None = None
    ) -> None:
        self.api = PrometheusConnect(url, timeout=int(timeout) or 1)
        self.url = url
        self.window = window
        self.tenant = tenant

    # -- the source ------------------------------------------------------------------------
    def _reach(self, call: Callable[[], Any]) -> Any:
        """``call`` against the source; not reaching it at all is one line (DashboardError),
        a query the source refuses stays a PrometheusApiClientException (a problem)."""
        try:
            return call()
        except requests.RequestException as exc:
            raise DashboardError(
                f"cannot reach Prometheus at {self.url}: {type(exc).__name__}"
            ) from None

    def _values(self, query: str, values: dict[str, str]) -> list[str]:
        return list(self._reach(lambda: self._ask_values(query, values)))

    def _ask_values(self, query: str, values: dict[str, str]) -> list[str]:
        parsed = parse_variable(substitute(query, values))
        params = {
            "start": f"{self.window.start.timestamp():.3f}",
            "end": f"{self.window.end.timestamp():.3f}",
        }
        if parsed is None:
            return []
        if parsed.kind == "label_values":
            if parsed.promql is not None:
                params["match[]"] = parsed.promql
            return sorted(self.api.get_label_values(parsed.label, params))
        out = []  # query_result: the series as Grafana prints them
        for item in self.api.custom_query(str(parsed.promql), {"time": params["end"]}):
            labels = ",".join(
                f'{k}="{v}"' for k, v in sorted(item["metric"].items()) if k != "__name__"
            )
            out.append(f"{item['metric'].get('__name__', '')}{{{labels}}}")
        return out

    def run(self, expr: str, instant: bool) -> list[dict[str, Any]]:
        """One panel query, instant or over the window."""
        return list(self._reach(lambda: self._ask(expr, instant)))

    def _ask(self, expr: str, instant: bool) -> list[dict[str, Any]]:
        if instant:
            return list(self.api.custom_query(expr, {"time": f"{self.window.end.timestamp():.3f}"}))
        return list(
            self.api.custom_query_range(expr, self.window.start, self.window.end, self.window.step)
        )

    @staticmethod
    def _has_data(result: Sequence[dict[str, Any]]) -> bool:
        for item in result:
            points = item.get("values") or ([item["value"]] if "value" in item else [])
            if any(not math.isnan(float(v)) for _t, v in points):
                return True
        return False

    # -- one dashboard ---------------------------------------------------------------------
    def variables(
        self, built: Built, choice: Sequence[int] = ()
    ) -> tuple[dict[str, str], list[Problem]]:
        """Values for the dashboard's variables (``choice[j]``: which answer of the j-th query
        variable to take, default the first), and the variables that had none."""
        values = dict(self.window.builtins())
        problems = []
        j = 0
        for v in built.doc.get("templating", {}).get("list", []):
            if v.get("type") == "datasource":
                continue
            if v.get("type") == "custom":
                values[v["name"]] = str(v.get("query", "")).split(",")[0]
                continue
            try:
                answers = self._values(str(v.get("query", "")), values)
            except PrometheusApiClientException as exc:
                problems.append(Problem("variable-error", built.uid, "", f"${v['name']}: {exc}"))
                answers = []
            if v.get("regex"):
                pattern = re.compile(v["regex"].strip("/"))
                answers = [
                    m.group("value")
                    if "value" in pattern.groupindex
                    else (m.group(1) if m.groups() else a)
                    for a in answers
                    if (m := pattern.search(a))
                ]
            pick = choice[j] if j < len(choice) else 0
            j += 1
            if not answers:
                problems.append(
                    Problem(
                        "variable-no-values",
                        built.uid,
                        "",
                        f"${v['name']}: {v.get('query')} has no values",
                    )
                )
                values[v["name"]] = "__none__"
                continue
            if pick >= len(answers):
                raise IndexError(pick)
            multi = v.get("multi") or v.get("includeAll")
            values[v["name"]] = _escape(answers[pick]) if multi else answers[pick]
        return values, problems

    def _choices(self, built: Built) -> list[tuple[int, ...]]:
        """The combinations of answers tried: up to :data:`TRIES` per query variable, fewest
        changes from the first answers first, at most :data:`COMBINATIONS`."""
        n = sum(
            1 for v in built.doc.get("templating", {}).get("list", []) if v.get("type") == "query"
        )
        combos = sorted(itertools.product(range(TRIES), repeat=n), key=lambda c: (sum(c), c))
        return combos[:COMBINATIONS]

    def prove_with(self, built: Built, choice: Sequence[int] = ()) -> Proof:
        """Every query of ``built`` with the variables' answers ``choice``."""
        values, problems = self.variables(built, choice)
        proof = Proof(
            built.uid, {k: v for k, v in values.items() if not k.startswith("__")}, 0, problems
        )
        for panel in panels(built.doc):
            title = panel.get("title", "")
            for target in panel.get("targets", []):
                expr = target.get("expr")
                if not expr:
                    continue
                query = substitute(expr, values)
                proof.queries += 1
                ref = target.get("refId", "")
                try:
                    result = self.run(query, bool(target.get("instant")))
                except PrometheusApiClientException as exc:
                    proof.problems.append(
                        Problem(
                            "panel-query-error",
                            built.uid,
                            title,
                            f"{ref}: {str(exc)[:200]}: {query}",
                        )
                    )
                    continue
                if not self._has_data(result):
                    proof.problems.append(
                        Problem("panel-no-data", built.uid, title, f"{ref}: no series: {query}")
                    )
                if self.tenant is not None:
                    others = sorted(
                        {
                            item["metric"]["tenant"]
                            for item in result
                            if item["metric"].get("tenant", self.tenant) != self.tenant
                        }
                    )
                    if others:
                        proof.problems.append(
                            Problem(
                                "tenant-leak",
                                built.uid,
                                title,
                                f"{ref}: series of other tenants {others}: {query}",
                            )
                        )
        return proof

    def prove(self, built: Built) -> Proof:
        """The best of the combinations of variable values tried (:meth:`_choices`)."""
        best: Proof | None = None
        for choice in self._choices(built):
            try:
                proof = self.prove_with(built, choice)
            except IndexError:  # fewer answers than this combination needs
                continue
            if best is None or len(proof.problems) < len(best.problems):
                best = proof
            if not proof.problems:
                break
        assert best is not None
        return best


def prove_all(
    built: Sequence[Built],
    url: str,
    window: Window,
    audience: str,
    tenant: str | None = None,
    progress: Callable[[Proof], None] = lambda _p: None,
) -> list[Proof]:
    """The proofs of every dashboard for ``audience`` (operator or tenant)."""
    prover = Prover(url, window, tenant=tenant)
    out = []
    for b in built:
        if b.audience != audience:
            continue
        proof = prover.prove(b)
        progress(proof)
        out.append(proof)
    return out
