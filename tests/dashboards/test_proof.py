"""Every panel proven against live data: the operator dashboards against a real Prometheus
scraping the real exporters (KVM guests under libvirtd, Open vSwitch, Ceph, the inventory
service, node_exporter, the Pushgateway fed by a real metering run) with the built rules; the
tenant dashboards against a tenant's own Prometheus that federates only that tenant's series,
and nothing of another tenant's may come back."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards.build import build_all
from dashboards.proof import Window, prove_all
from lab.alerting import HOST, AlertLab
from lab.ceph import CephLab
from lab.history import HistorySeries
from lab.libvirt import LibvirtLab
from lab.ovs import OvsLab
from lab.procs import copy_logs, free_port
from lab.prometheus import PrometheusServer
from tenant_stack.gate import Gate
from tenant_stack.reconcile import Reconciler
from tenant_stack.render import Tenant
from tenant_stack.state import load
from tests.metering.scenario import T0
from tests.support import need_binary
from zcp.config import GateConfig, LocalDriverConfig, TenantsConfig, TierConfig
from zcp.inventory.model import Inventory
from zcp.wait import wait_until

pytestmark = pytest.mark.integration


def _wait(prom: PrometheusServer, expr: str, timeout: float = 90) -> None:
    assert wait_until(lambda: prom.query(expr), timeout, interval=1), (
        f"{expr!r} still empty after {timeout:.0f}s"
    )


@pytest.fixture(scope="module")
def live(
    libvirt_lab: LibvirtLab,
    ovs_lab: OvsLab,
    ceph_lab: CephLab,
    ceph_cloud: dict[str, Any],
    victoria: Any,
    history_victoria: str,
    default_inventory: Inventory,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Any]]:
    need_binary("prometheus", "prometheus")
    need_binary("prometheus-node-exporter", "prometheus-node-exporter")
    need_binary("prometheus-pushgateway", "prometheus-pushgateway")
    workdir = tmp_path_factory.mktemp("dashboard-lab")
    ovs_lab.add_bridge("br-int")
    ovs_lab.del_port("br-int", "vx-proof")
    ovs_lab.add_tunnel("br-int", "vx-proof", "192.0.2.77", key="7001", bfd=True)
    lab = AlertLab(
        libvirt_lab,
        workdir,
        ovs=ovs_lab,
        ceph=ceph_lab,
        node=True,
        pushgateway=True,
        ovs_ports=("dbvm", "10.202"),
    )
    reconciler: Reconciler | None = None
    gate: Gate | None = None
    try:
        lab.start()
        assert lab.prometheus is not None and lab.inventory is not None
        prom = lab.prometheus
        # the metering job's pushes: a real run over two hours of the inventory's VM states
        # (on a day of the shared VictoriaMetrics no other test reads)
        acme = next(t for t in default_inventory.tenants if t.name == "acme")
        day = T0 + timedelta(days=24)
        ms = int(day.timestamp() * 1000)
        victoria.load(
            [
                HistorySeries(
                    "zcp_vm_state",
                    tuple(
                        sorted(
                            {
                                "job": "zcp-inventory",
                                "vm_id": vm.id,
                                "account_id": vm.account_id,
                                "state": "Running",
                            }.items()
                        )
                    ),
                    tuple((ms + k * 60_000, 1) for k in range(150)),
                )
                for vm in lab.inventory.vms
            ]
        )
        cfg = workdir / "metering.yaml"
        cfg.write_text(
            yaml.safe_dump(
                {
                    "metering": {
                        "query_url": history_victoria,
                        "database_url": f"sqlite:///{workdir}/m.db",
                        "settle_seconds": 0,
                        "pushgateway_url": lab.pushgateway_url,
                    }
                }
            )
        )
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "zcp_obs",
                "--config",
                str(cfg),
                "metering",
                "run",
                "--from",
                day.isoformat(),
                "--to",
                (day + timedelta(hours=2)).isoformat(),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr
        # a real fault, so that the alert panels have something to show: the acme VM whose
        # id sorts last loses its guest (the dashboards' variables pick the first ones)
        victim = max(
            (vm for vm in lab.inventory.vms if vm.account_id == acme.account_id),
            key=lambda vm: vm.id,
        )
        lab.lab.destroy_guest(victim.instance_name)
        # acme's own stack, as the reconciler makes it: its Prometheus federates through the
        # gate (acme's series only), and the reconcile's health goes to the Pushgateway
        gate = Gate(
            GateConfig(
                listen="127.0.0.1:0",
                metrics_listen="127.0.0.1:0",
                upstream=prom.url,
                tokens_file=workdir / "tenants" / "gate-tokens.yaml",
            )
        ).start()
        tenants = TenantsConfig(
            state_dir=workdir / "tenants",
            accounts={acme.account_id: "standard"},
            tiers={"standard": TierConfig(retention="1d", scrape_interval="1s")},
            gate_url=f"http://127.0.0.1:{gate.port}",
            pushgateway_url=lab.pushgateway_url,
            local=LocalDriverConfig(port_base=free_port()),
            gate=gate.cfg,
        )
        reconciler = Reconciler(
            tenants, lambda: {acme.account_id: Tenant(acme.account_id, acme.name, "standard")}
        )
        outcome = reconciler.run()
        assert not outcome.failed, outcome.failed
        record = load(tenants.state_dir).tenants[acme.account_id]
        tenant_url = f"http://127.0.0.1:{record.prometheus_port}"
        tenant_prom = PrometheusServer.__new__(PrometheusServer)  # a client of the stack's
        tenant_prom.url = tenant_url
        lab.stack.add_job(
            "tenant-prometheus", tenant_url.removeprefix("http://"), tenant=acme.account_id
        )
        lab.stack.add_job("zcp-federation-gate", f"127.0.0.1:{gate.metrics_port}")
        prom.write_config(
            {**yaml.safe_load(prom.config_path.read_text()), "scrape_configs": lab.stack.jobs}
        )
        _wait(prom, 'ALERTS{alertname="VMDownUnexpectedly",alertstate="firing"}')
        _wait(prom, 'up{job="tenant-prometheus"} == 1')
        _wait(prom, "zcp_metering_usage")
        _wait(prom, "rate(node_cpu_seconds_total[1m])")
        _wait(prom, "ceph_rgw_bucket_stored_bytes")
        _wait(prom, "ceph_cephfs_subvolume_quota_bytes")
        _wait(tenant_prom, "tenant:ceph_rgw_bucket_stored_bytes:max")
        _wait(tenant_prom, "tenant:libvirt_domain_interface_transmit_bytes:rate5m")
        _wait(prom, "zcp_tenant_reconcile_last_run_success")
        _wait(
            prom,
            'count_over_time(zcp_gate_requests_total{job="zcp-federation-gate",code="200"}[1m])'
            " >= 20",
        )
        yield {
            "operator": prom.url,
            "tenant": tenant_prom.url,
            "tenant_id": acme.account_id,
            "victim": victim.id,
        }
    finally:
        copy_logs(lab.daemons(), Path(workdir) / "kept-logs")
        if reconciler is not None:
            for tid in reconciler.driver.deployed():
                reconciler.driver.retire(tid)
        if gate is not None:
            gate.shutdown()
        lab.stop()


def _report(proofs: list[Any]) -> list[str]:
    return [str(p) for proof in proofs for p in proof.problems]


def test_every_operator_panel_shows_data(live: dict[str, Any]) -> None:
    built = build_all()
    began = time.monotonic()
    proofs = prove_all(
        built, live["operator"], Window(datetime.now(UTC), timedelta(minutes=10)), "operator"
    )
    elapsed = time.monotonic() - began
    assert {p.uid for p in proofs} == {b.uid for b in built if b.audience == "operator"}
    assert _report(proofs) == [], [(p.uid, p.values) for p in proofs if p.problems]
    queries = sum(p.queries for p in proofs)
    assert queries > 100
    print(f"\noperator proof: {len(proofs)} dashboards, {queries} queries, {elapsed:.1f}s")
    # the variables took real values from their own answers
    vm = next(p for p in proofs if p.uid == "zcp-vm")
    assert vm.values["vm"] and vm.values["vm"] != live["victim"]
    assert next(p for p in proofs if p.uid == "zcp-hypervisor").values["host"] == HOST


def test_every_tenant_panel_shows_only_that_tenants_data(live: dict[str, Any]) -> None:
    built = build_all()
    proofs = prove_all(
        built,
        live["tenant"],
        Window(datetime.now(UTC), timedelta(minutes=10)),
        "tenant",
        tenant=live["tenant_id"],
    )
    assert {p.uid for p in proofs} == {b.uid for b in built if b.audience == "tenant"}
    assert _report(proofs) == []


def test_a_renamed_metric_fails_the_proof_naming_the_panel(live: dict[str, Any]) -> None:
    """The proof can fail: the VM dashboard with a metric renamed, as an exporter change would
    do it, names the dashboard, the panel and the query."""
    from dashboards.build import Built

    vm = next(b for b in build_all() if b.uid == "zcp-vm")
    text = yaml.safe_dump(vm.doc).replace(
        "libvirt_domain_vcpu_delay_seconds_total", "libvirt_domain_vcpu_steal_seconds_total"
    )
    broken = Built(vm.source, vm.uid, vm.title, yaml.safe_load(text))
    (proof,) = prove_all([broken], live["operator"], Window(datetime.now(UTC)), "operator")
    assert [(p.rule, p.panel) for p in proof.problems] == [("panel-no-data", "Steal per vCPU")]
    assert "libvirt_domain_vcpu_steal_seconds_total" in proof.problems[0].message


def _colored(png: Any, box: tuple[int, int, int, int], colors: list[str]) -> int:
    """Pixels inside ``box`` close to one of ``colors``."""
    import numpy as np
    from matplotlib.colors import to_rgb

    left, top, right, bottom = box
    area = png[top:bottom, left:right, :3]
    hits = np.zeros(area.shape[:2], dtype=bool)
    for c in colors:
        hits |= np.abs(area - np.array(to_rgb(c))).max(axis=2) < 0.12
    return int(hits.sum())


@pytest.mark.parametrize("audience", ["operator", "tenant"])
def test_previews_draw_every_panel_from_live_data(
    live: dict[str, Any], audience: str, tmp_path: Path
) -> None:
    import json

    import matplotlib.image

    from dashboards.kit import YELLOW
    from dashboards.preview import NAMED, PALETTE, TEXT

    url = live["operator"] if audience == "operator" else live["tenant"]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "zcp_obs",
            "dashboards",
            "preview",
            "--prometheus",
            url,
            "--out",
            str(tmp_path),
            "--audience",
            audience,
            "--window",
            "600",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    uids = {b.uid for b in build_all() if b.audience == audience}
    assert {p.stem for p in tmp_path.glob("*.png")} == uids
    for uid in uids:
        png = matplotlib.image.imread(tmp_path / f"{uid}.png")
        manifest = json.loads((tmp_path / f"{uid}.json").read_text())
        assert manifest["panels"]
        for panel in manifest["panels"]:
            assert panel["series"] > 0, (uid, panel["title"])  # the proof says it has data
            # what the data is drawn in: lines and bars in the palette, values in their
            # thresholds' colours, tables in the text colour ("No data" is grey)
            colors = [TEXT] if panel["kind"] == "table" else [*PALETTE, *NAMED.values(), YELLOW]
            assert _colored(png, tuple(panel["box"]), colors) > 10, (uid, panel["title"])
