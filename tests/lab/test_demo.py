"""The demo end to end, as a newcomer runs it: ``zcp-obs demo up``, then ``demo down``, judged
from the outside (HTTP and files only)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from lab.demo_control import leftovers
from lab.demo_dashboards import blank
from zcp.wait import wait_until

pytestmark = pytest.mark.integration
ZCP_OBS = [sys.executable, "-m", "zcp_obs", "--log-format", "json", "demo"]


def query(url: str, expr: str) -> list[dict[str, Any]]:
    body = requests.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def test_demo_up_shows_the_whole_stack_and_down_leaves_nothing(tmp_path: Path) -> None:
    state = tmp_path / "demo"
    up = subprocess.run(
        [*ZCP_OBS, "up", "--state-dir", str(state)], capture_output=True, text=True, timeout=900
    )
    doc: dict[str, Any] = {}
    try:
        assert up.returncode == 0, up.stderr[-4000:]
        doc = json.loads((state / "summary.json").read_text())
        assert "The stack is up" in up.stdout and "zcp-obs demo down" in up.stdout
        shown = re.findall(r"^\[(\d+)/(\d+) \+ *[0-9.]+s\] ", up.stderr, re.M)
        total = {int(t) for _, t in shown}
        assert len(total) == 1 and total.pop() >= 12, shown
        assert [int(n) for n, _ in shown] == list(range(1, len(shown) + 1)), shown
        prom = doc["urls"]["operator Prometheus"]

        # every target of the operator Prometheus up
        def all_up() -> list[str] | None:
            targets = requests.get(f"{prom}/api/v1/targets", timeout=10).json()["data"]
            health = {t["labels"]["job"]: t["health"] for t in targets["activeTargets"]}
            return sorted(health) if set(health.values()) == {"up"} else None

        jobs = wait_until(all_up, 30, 1.0)
        assert jobs, requests.get(f"{prom}/api/v1/targets", timeout=10).json()
        for job in (
            "zcp-inventory",
            "libvirt",
            "ovs",
            "zcp-ceph",
            "ceph",
            "node",
            "zcp-federation-gate",
            "tenant-prometheus",
            "victoria-metrics",
        ):
            assert job in jobs

        # the fault: its page received with the VM's identity and runbook, then resolved
        fault = doc["fault"]
        pages = [json.loads(x) for x in Path(doc["pages"]).read_text().splitlines()]
        about = [
            a
            for p in pages
            for a in p["alerts"]
            if a["labels"]["alertname"] == "VMDownUnexpectedly"
            and a["labels"].get("vm_id") == fault["vm_id"]
        ]
        firing = [a for a in about if a["status"] == "firing"]
        assert firing and firing[0]["labels"]["instance_name"] == fault["instance_name"]
        assert firing[0]["labels"]["account"] and firing[0]["annotations"]["runbook_url"]
        assert any(a["status"] == "resolved" for a in about)

        # each tenant's Prometheus holds its own tenant:* series and nothing else
        assert len(doc["tenant_prometheus"]) == 3
        for name, url in doc["tenant_prometheus"].items():
            series = requests.get(
                f"{url}/api/v1/series", params={"match[]": '{__name__=~".+"}'}, timeout=10
            ).json()["data"]
            own = [s for s in series if s.get("tenant") == doc["tenant_ids"][name]]
            # the rest is the tenant Prometheus's own: its scrape's up/scrape_*, its self-scrape
            rest = [s for s in series if s.get("tenant") != doc["tenant_ids"][name]]
            assert own and all(s["__name__"].startswith("tenant:") for s in own)
            assert all("tenant" not in s for s in rest), (name, rest[:3])
            assert all(
                (s["job"] == "federate" and re.fullmatch("up|scrape_.+", s["__name__"]))
                or (s["job"] == "prometheus" and s["instance"] == url.removeprefix("http://"))
                for s in rest
            ), (name, [s for s in rest if s["job"] != "prometheus"][:3])

        # the dashboards drawn from live data: every preview written, and not blank but for
        # the metering ones (the demo meters after they are drawn)
        previews = sorted(Path(doc["dashboards"]["previews_dir"]).glob("*/*.png"))
        assert len(previews) == len(doc["dashboards"]["previews"]) >= 10
        drawn = {p.stem for p in previews if not blank(p)}
        assert {p.stem for p in previews} - drawn <= {"zcp-metering", "zcp-tenant-usage"}

        # the long-term store holds the operator's series
        vm = doc["urls"]["VictoriaMetrics (long-term store)"]
        assert wait_until(lambda: query(vm, "count(zcp_vm_info)"), 30, 1.0)
        assert query(vm, 'count(up{job="libvirt"})')
    finally:
        down = subprocess.run(
            [*ZCP_OBS, "down", "--state-dir", str(state)],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert down.returncode == 0, down.stderr[-3000:]
    assert "removed what the demo left behind" not in down.stderr, down.stderr[-2000:]
    assert doc and leftovers(doc) == {"daemons": [], "namespaces": [], "bridges": []}
