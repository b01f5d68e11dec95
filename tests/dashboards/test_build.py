"""Dashboards as code: deterministic builds, stable unique uids, the ported dashboard-linter
rules (and that they catch what they are for), the grafana-foundation-sdk round trip, and the
command's one-line errors."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards.build import LEGACY, Built, DashboardError, build_all, encode, load, panels
from dashboards.lint import Exception_, check, check_expr, exceptions, lint

OPERATOR = {
    "zcp-cloud-overview",
    "zcp-hypervisor",
    "zcp-vm",
    "zcp-storage",
    "zcp-network",
    "zcp-metering",
    "zcp-platform",
}
TENANT = {
    "zcp-tenant-overview",
    "zcp-tenant-vm",
    "zcp-tenant-storage",
    "zcp-tenant-network",
    "zcp-tenant-usage",
}


def zcp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zcp_obs", "dashboards", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def built() -> list[Built]:
    return build_all()


def test_the_dashboards_and_their_audiences(built: list[Built]) -> None:
    assert {b.uid for b in built if b.audience == "operator"} == OPERATOR
    assert {b.uid for b in built if b.audience == "tenant"} == TENANT
    for b in built:
        doc = b.doc
        assert doc["schemaVersion"] >= 39 and doc["editable"] is False
        assert len(b.uid) <= 40
        variables = doc["templating"]["list"]
        assert variables[0]["name"] == "datasource" and variables[0]["label"] == "Data source"
        assert "null" not in encode(doc)
        for panel in panels(doc):
            assert panel["type"] not in (
                "graph",
                "singlestat",
                "table-old",
                "grafana-piechart-panel",
            )
            pos = panel["gridPos"]
            assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24


def test_two_builds_are_byte_identical(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        result = zcp("build", "--out", str(out))
        assert result.returncode == 0, result.stderr
    files = sorted(p.relative_to(a) for p in a.rglob("*.json"))
    assert len(files) == len(OPERATOR | TENANT)
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    assert {p.parent.name for p in files} == {"operator", "tenant"}
    doc = json.loads((a / "operator" / "zcp-vm.json").read_text())
    assert doc["uid"] == "zcp-vm"


def test_chained_variables_refresh_on_time_range_change(built: list[Built]) -> None:
    vm = {
        v["name"]: v for v in next(b for b in built if b.uid == "zcp-vm").doc["templating"]["list"]
    }
    assert all(vm[n]["refresh"] == 2 for n in ("zone", "host", "tenant", "vm"))
    assert "$zone" in vm["host"]["query"]  # zone -> host -> VM, and tenant -> VM
    assert all(f"${n}" in vm["vm"]["query"] for n in ("zone", "host", "tenant"))
    host = next(b for b in built if b.uid == "zcp-hypervisor").doc["templating"]["list"]
    assert "$zone" in host[2]["query"]


def test_every_rate_uses_rate_interval_and_every_panel_has_a_unit(built: list[Built]) -> None:
    assert lint(built) == []
    for b in built:
        for panel in panels(b.doc):
            if panel["type"] == "row":
                continue
            assert panel["fieldConfig"]["defaults"]["unit"]
            for t in panel["targets"]:
                if "rate(" in t["expr"]:
                    assert "$__rate_interval" in t["expr"]


def _broken(built: list[Built], uid: str, change: Any) -> Built:
    b = next(x for x in built if x.uid == uid)
    doc = copy.deepcopy(b.doc)
    change(doc)
    return Built(b.source, b.uid, b.title, doc)


def _first_panel(doc: dict[str, Any]) -> dict[str, Any]:
    return next(p for p in panels(doc) if p["type"] != "row")


def test_the_lint_catches_what_it_is_for(built: list[Built]) -> None:
    def rules(change: Any, uid: str = "zcp-vm") -> set[str]:
        return {p.rule for p in check(_broken(built, uid, change))}

    assert rules(
        lambda d: _first_panel(d)["targets"][0].update(
            expr="rate(libvirt_domain_cpu_time_seconds_total[5m])"
        )
    ) == {"target-rate-interval-rule"}
    assert rules(
        lambda d: _first_panel(d)["targets"][0].update(
            expr="sum(libvirt_domain_cpu_time_seconds_total)"
        )
    ) == {"target-counter-agg-rule"}
    assert rules(lambda d: _first_panel(d)["targets"][0].update(expr="sum(foo")) == {
        "target-promql-rule"
    }
    assert rules(lambda d: _first_panel(d).update(description="")) == {
        "panel-title-description-rule"
    }
    assert rules(lambda d: _first_panel(d)["fieldConfig"]["defaults"].pop("unit")) == {
        "panel-units-rule"
    }
    assert rules(lambda d: _first_panel(d).update(datasource={"uid": "prom-1"})) == {
        "panel-datasource-rule"
    }
    assert rules(lambda d: _first_panel(d).update(targets=[])) == {"panel-no-targets-rule"}
    assert rules(lambda d: _first_panel(d).update(type="graph")) == {"panel-type"}
    assert rules(lambda d: d.update(editable=True)) == {"uneditable-dashboard"}
    assert rules(lambda d: d["templating"]["list"][4].update(refresh=1)) == {
        "template-on-time-change-reload-rule"
    }
    assert rules(
        lambda d: d["templating"]["list"][4].update(query="label_values(zcp_vm_info{, vm_id)")
    ) == {"template-label-promql-rule"}
    assert rules(lambda d: d["templating"]["list"].pop(0)) == {"template-datasource-rule"}
    # a tenant dashboard may only read tenant:* series (a tenant's Prometheus has no other)
    assert rules(
        lambda d: _first_panel(d)["targets"][0].update(expr="count(zcp_vm_info)"),
        "zcp-tenant-overview",
    ) == {"tenant-series-rule"}


def test_rate_interval_and_counters_in_nested_expressions() -> None:
    assert (
        check_expr(
            "sum by (a) (rate(x_total[$__rate_interval])) / "
            "clamp_min(sum(irate(y_total[$__rate_interval])), 1)"
        )
        == []
    )
    assert [r for r, _m in check_expr("max_over_time(rate(x_total[5m])[1h:])")] == [
        "target-rate-interval-rule"
    ]
    assert [r for r, _m in check_expr("x_total + rate(y_total[$__rate_interval])")] == [
        "target-counter-agg-rule"
    ]


def test_exceptions_need_a_reason_and_are_written_down(tmp_path: Path) -> None:
    waived = exceptions()
    assert waived and all(e.reason for e in waived)
    bad = tmp_path / "x.yaml"
    bad.write_text("- rule: panel-units-rule\n  dashboard: zcp-vm\n")
    with pytest.raises(DashboardError, match="entry 1 needs a rule and a reason"):
        exceptions(bad)
    assert Exception_("panel-units-rule", "zcp-vm", "", "r").covers(
        next(
            iter(
                check(
                    _broken(
                        build_all(),
                        "zcp-vm",
                        lambda d: _first_panel(d)["fieldConfig"]["defaults"].pop("unit"),
                    )
                )
            )
        )
    )


def test_the_foundation_sdk_round_trip_drops_nothing(built: list[Built]) -> None:
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models import dashboard as model

    register_default_plugins()

    def dropped(a: Any, b: Any, path: str = "") -> list[str]:
        out = []
        if isinstance(a, dict):
            for k, v in a.items():
                out += [f"{path}/{k}"] if k not in b else dropped(v, b[k], f"{path}/{k}")
        elif isinstance(a, list) and isinstance(b, list):
            for i, (x, y) in enumerate(zip(a, b, strict=False)):
                out += dropped(x, y, f"{path}[{i}]")
        return out

    for b in built:
        back = json.loads(json.dumps(model.Dashboard.from_json(b.doc), cls=JSONEncoder))
        assert dropped(b.doc, back) == [], b.uid
    # what the build removes is exactly what grafanalib writes and the model no longer has
    assert "rows" in LEGACY["dashboard"] and "metric" in LEGACY["target"]


def test_a_broken_definition_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.dashboard.py"
    path.write_text("from dashboards.kit import nothing_here\n")
    with pytest.raises(DashboardError, match=r"^bad.dashboard.py: ImportError: "):
        load(path)
    (tmp_path / "none.dashboard.py").write_text("x = 1\n")
    with pytest.raises(DashboardError, match="defines no module-level `dashboard`"):
        load(tmp_path / "none.dashboard.py")


def test_an_unwritable_out_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = zcp("build", "--out", str(blocker / "sub"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: cannot create {blocker / 'sub'}: Not a directory"
    ]


def test_check_runs_the_lint() -> None:
    result = zcp("check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "lint: 12 dashboards, 0 problems" in result.stderr


def test_provisioning_files_for_a_tenant_stack(tmp_path: Path) -> None:
    done = zcp("provision", "--out", str(tmp_path / "grafana"), "--folder", "My cloud")
    assert done.returncode == 0, done.stderr
    provider = yaml.safe_load((tmp_path / "grafana/provisioning/dashboards/zcp.yaml").read_text())
    assert provider["apiVersion"] == 1
    (p,) = provider["providers"]
    assert p["type"] == "file" and p["folder"] == "My cloud" and p["allowUiUpdates"] is False
    files = sorted(Path(p["options"]["path"]).glob("*.json"))
    assert {f.stem for f in files} == TENANT
    bad = zcp("provision", "--out", str(tmp_path / "grafana"), "--json-dir", "/proc/nope")
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
    assert bad.stderr.startswith("Error: cannot write ")


def test_an_unreachable_prometheus_is_one_line(tmp_path: Path) -> None:
    from lab.procs import free_port

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    for args in (
        ["check", "--prometheus", url],
        ["preview", "--prometheus", url, "--out", str(tmp_path)],
    ):
        done = zcp(*args)
        assert done.returncode == 1, args
        lines = [line for line in done.stderr.strip().splitlines() if line.startswith("Error:")]
        assert lines == [f"Error: cannot reach Prometheus at {url}: ConnectionError"], args
        assert "Traceback" not in done.stderr
