"""``zcp-obs dashboards build``: every ``defs/*.dashboard.py`` written as Grafana JSON.

Each definition file follows grafanalib's convention (a module-level ``dashboard``). The JSON is
grafanalib's, post-processed once here: keys with a ``null`` value are dropped (Grafana fills
its defaults; grafana-foundation-sdk refuses ``"datasource": null``), and the legacy keys
grafanalib still writes are removed (:data:`LEGACY`). Output is deterministic (sorted keys,
two-space indent, a trailing newline), so two builds are byte-identical; files are written
atomically.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grafanalib._gen import DashboardEncoder

from zcp.errors import ZcpError
from zcp.files import write_atomic

DEFS = Path(__file__).resolve().parent / "defs"
SUFFIX = ".dashboard.py"

# keys grafanalib writes that Grafana's current dashboard model no longer has (the
# grafana-foundation-sdk round trip drops exactly these, tested): removed at build
LEGACY = {
    "dashboard": ("hideControls", "rows", "sharedCrosshair", "style", "__inputs", "gnetId", "id"),
    "panel": (
        "editable",
        "error",
        "span",
        "minSpan",
        "height",
        "repeat",
        "cacheTimeout",
        "hideTimeOverride",
        "timeFrom",
        "timeShift",
        "thresholdType",
        "fieldOptions",
        "showThresholdLabels",
        "showThresholdMarkers",
        "columns",
        "fontSize",
        "color",
        "mappings",
    ),
    "target": ("metric", "query", "step", "target"),
    "variable": ("tags", "useTags", "tagsQuery", "tagValuesQuery"),
}
# a row keeps only these
ROW = ("collapsed", "gridPos", "id", "panels", "title", "type")
CHILD = {"panels": "panel", "targets": "target", "list": "variable"}


class DashboardError(ZcpError):
    """A dashboard definition that does not load or does not build."""


@dataclass(frozen=True)
class Built:
    """One built dashboard: its definition file, uid and JSON document."""

    source: Path
    uid: str
    title: str
    doc: dict[str, Any]

    @property
    def audience(self) -> str:
        return "tenant" if "tenant" in self.doc.get("tags", ()) else "operator"

    @property
    def filename(self) -> str:
        return f"{self.uid}.json"


def sources(directory: Path = DEFS) -> list[Path]:
    """The definition files, in name order."""
    return sorted(directory.glob(f"*{SUFFIX}"))


def load(path: Path) -> Any:
    """The module-level ``dashboard`` of one definition file."""
    name = "zcp_dashboard_" + path.name.removesuffix(SUFFIX).replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise DashboardError(f"{path}: cannot be loaded")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # a broken definition: one line naming the file
        raise DashboardError(f"{path.name}: {type(exc).__name__}: {exc}") from None
    if not hasattr(module, "dashboard"):
        raise DashboardError(f"{path.name}: defines no module-level `dashboard`")
    return module.dashboard


def _clean(value: Any, kind: str = "dashboard") -> Any:
    if isinstance(value, dict):
        drop = LEGACY.get(kind, ())
        row = kind == "panel" and value.get("type") == "row"
        out = {}
        for k, v in value.items():
            if v is None or k in drop or (row and k not in ROW):
                continue
            out[k] = _clean(v, CHILD.get(k, "item"))
        return out
    if isinstance(value, list):
        return [_clean(v, kind) for v in value]
    return value


def to_doc(dashboard: Any) -> dict[str, Any]:
    """grafanalib's JSON of ``dashboard``, cleaned (see the module docstring)."""
    raw = json.loads(json.dumps(dashboard.to_json_data(), cls=DashboardEncoder, sort_keys=True))
    doc: dict[str, Any] = _clean(raw)
    for panel in panels(doc):
        field = panel.get("fieldConfig")
        if isinstance(field, dict):  # the gauge's pre-7 keys next to the current ones
            panel["fieldConfig"] = {
                k: v for k, v in field.items() if k in ("defaults", "overrides")
            }
            defaults = panel["fieldConfig"].get("defaults", {})
            for k in ("calcs", "override", "values"):
                defaults.pop(k, None)
        if panel.get("type") == "bargauge":
            for k in ("fieldOptions", "showThresholdLabels", "showThresholdMarkers"):
                panel.get("options", {}).pop(k, None)
    for variable in doc.get("templating", {}).get("list", []):
        variable.get("current", {}).pop("tags", None)
    return doc


def panels(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel of a dashboard document (rows' nested panels included)."""
    for panel in doc.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def build_all(directory: Path = DEFS) -> list[Built]:
    """Every definition built, uids checked unique."""
    out: list[Built] = []
    seen: dict[str, Path] = {}
    for path in sources(directory):
        doc = to_doc(load(path))
        uid = doc.get("uid", "")
        if not uid:
            raise DashboardError(f"{path.name}: the dashboard has no uid")
        if uid in seen:
            raise DashboardError(f"{path.name}: uid {uid!r} is also {seen[uid].name}'s")
        seen[uid] = path
        out.append(Built(path, uid, doc.get("title", ""), doc))
    return out


def encode(doc: dict[str, Any]) -> str:
    """The file text of a document: sorted keys, two-space indent, trailing newline."""
    return json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def write(out: Path, built: list[Built]) -> list[Path]:
    """Write each dashboard under ``out/<audience>/<uid>.json``; the paths written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DashboardError(f"cannot create {out}: {exc.strerror}") from None
    paths = []
    for b in built:
        path = out / b.audience / b.filename
        try:
            write_atomic(path, encode(b.doc))
        except OSError as exc:
            raise DashboardError(f"cannot write {path}: {exc.strerror}") from None
        paths.append(path)
    return paths
