"""Real faults page on-call and the page resolves after the repair, end to end on real daemons:
KVM guests on a private libvirtd, the libvirt exporter, Prometheus with the built rules,
Alertmanager with the built config, and a webhook receiver (lab/alerting.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.alerting import HOST, AlertLab
from lab.ceph import CephLab
from lab.libvirt import LibvirtLab
from lab.ovs import OvsLab
from lab.procs import copy_logs
from tests.support import need_binary
from zcp.wait import wait_until

pytestmark = pytest.mark.integration
EXPECTED = {"VMDownUnexpectedly", "LibvirtExporterDown", "OVSDown", "CephOSDDown"}
# a stopped OSD (the only one) also makes the cluster warn and its PGs inactive: these may page
# too while it is down, nothing else may
CEPH_CONSEQUENCES = {
    "CephHealthWarning",
    "CephHealthError",
    "CephPGsInactive",
    "CephPGsUnclean",
    "CephOSDHostDown",
    "RGWDown",
    "S3EndpointDown",
}


@pytest.fixture(scope="module")
def alert_lab(
    libvirt_lab: LibvirtLab,
    ovs_lab: OvsLab,
    ceph_lab: CephLab,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AlertLab]:
    need_binary("prometheus", "prometheus")
    need_binary("prometheus-alertmanager", "prometheus-alertmanager")
    workdir = tmp_path_factory.mktemp("alert-lab")
    lab = AlertLab(libvirt_lab, workdir, ovs=ovs_lab, ceph=ceph_lab)
    try:
        lab.start()
        yield lab
    finally:
        copy_logs(lab.daemons(), Path(workdir) / "kept-logs")
        lab.stop()


def _unexpected(lab: AlertLab, allowed: frozenset[str] = frozenset()) -> list[str]:
    return sorted(
        {
            a["labels"]["alertname"]
            for n in lab.receiver.snapshot()
            for a in n.alerts()
            if a["labels"]["alertname"] not in EXPECTED | allowed
        }
    )


def _firing_until(
    lab: AlertLab, deadline: float, unwanted: Callable[[dict[str, Any]], bool], since: int = 0
) -> list[dict[str, Any]]:
    """Firing alerts matching ``unwanted`` in the notifications from index ``since`` on,
    watched until ``deadline`` (monotonic); returned as soon as one arrives."""

    def arrived() -> list[dict[str, Any]]:
        return [
            a for n in lab.receiver.snapshot()[since:] for a in n.alerts("firing") if unwanted(a)
        ]

    return wait_until(arrived, timeout=max(deadline - time.monotonic(), 0.0), interval=0.1)


def test_a_destroyed_guest_pages_with_its_identity_and_resolves(alert_lab: AlertLab) -> None:
    assert alert_lab.inventory is not None
    vm = alert_lab.inventory.vms[0]

    def this_vm(alert: dict[str, Any]) -> bool:
        labels = alert["labels"]
        return labels.get("alertname") == "VMDownUnexpectedly" and labels.get("vm_id") == vm.id

    # One window, as long as the lab's settings let a page take, holds both halves: the page
    # of the real fault arrives within it (so the window is long enough for any page), and no
    # other page does, of the healthy stack (since it started) or of another VM.
    bound = alert_lab.page_bound("VMDownUnexpectedly")
    alert_lab.lab.destroy_guest(vm.instance_name)
    fault = time.monotonic()  # the fault is complete: the guest is gone
    fired = alert_lab.receiver.wait_for(this_vm, "firing", fault, timeout=bound)
    assert fired is not None, f"no page for the destroyed guest within {bound:.1f}s"
    others = _firing_until(alert_lab, fault + bound, lambda a: not this_vm(a))
    assert others == [], [(a["labels"]["alertname"], a["labels"].get("vm_id")) for a in others]
    page = next(a for n in alert_lab.receiver.snapshot() for a in n.alerts("firing") if this_vm(a))
    assert page["labels"]["severity"] == "critical" and page["labels"]["area"] == "compute"
    assert page["labels"]["instance_name"] == vm.instance_name
    assert page["labels"]["host"] == HOST and page["labels"]["account"] == "acme"
    assert page["annotations"]["runbook_url"].endswith("/compute.md#vmdownunexpectedly")
    assert vm.id in page["annotations"]["description"]

    repair = time.monotonic()
    alert_lab.boot(vm.id)
    resolved = alert_lab.receiver.wait_for(this_vm, "resolved", repair, timeout=60)
    assert resolved is not None, "the page never resolved after the guest came back"
    assert _unexpected(alert_lab) == []


def test_a_stopped_exporter_pages_once_and_hides_nothing_else(alert_lab: AlertLab) -> None:
    def exporter_down(alert: dict[str, Any]) -> bool:
        return alert["labels"].get("alertname") == "LibvirtExporterDown"

    # VMDownUnexpectedly is what the exporter's absence would raise for every VM of the host
    bound = max(alert_lab.page_bound(a) for a in ("LibvirtExporterDown", "VMDownUnexpectedly"))
    before = len(alert_lab.receiver.snapshot())
    alert_lab.exporter.stop()
    fault = time.monotonic()  # the fault is complete: the exporter is gone
    try:
        fired = alert_lab.receiver.wait_for(exporter_down, "firing", fault, timeout=bound)
        assert fired is not None, f"no page for the stopped exporter within {bound:.1f}s"
        page = next(
            a for n in alert_lab.receiver.snapshot() for a in n.alerts("firing") if exporter_down(a)
        )
        assert page["labels"]["host"] == HOST and page["labels"]["severity"] == "critical"
        assert page["annotations"]["runbook_url"].endswith("/compute.md#libvirtexporterdown")
        # blind, not down: the VMs of the host must not page while their exporter is away,
        # watched for the whole window that just proved long enough for this host's page
        vm_pages = _firing_until(
            alert_lab,
            fault + bound,
            lambda a: a["labels"]["alertname"].startswith("VM"),
            since=before,
        )
        assert vm_pages == [], [
            (a["labels"]["alertname"], a["labels"].get("vm_id")) for a in vm_pages
        ]
    finally:
        repair = time.monotonic()
        alert_lab.exporter.start()
    assert alert_lab.receiver.wait_for(exporter_down, "resolved", repair, timeout=60) is not None
    assert _unexpected(alert_lab) == []


def test_a_stopped_ovs_vswitchd_pages_and_resolves(alert_lab: AlertLab) -> None:
    assert alert_lab.ovs is not None and alert_lab.ovs.vswitchd is not None

    def ovs_down(alert: dict[str, Any]) -> bool:
        return alert["labels"].get("alertname") == "OVSDown"

    fault = time.monotonic()
    alert_lab.ovs.vswitchd.stop()
    try:
        assert alert_lab.receiver.wait_for(ovs_down, "firing", fault, timeout=60) is not None
        page = next(
            a for n in alert_lab.receiver.snapshot() for a in n.alerts("firing") if ovs_down(a)
        )
        assert page["labels"]["host"] == HOST and page["labels"]["area"] == "network"
        assert page["annotations"]["runbook_url"].endswith("/network.md#ovsdown")
    finally:
        repair = time.monotonic()
        alert_lab.ovs.vswitchd.start()
    assert alert_lab.receiver.wait_for(ovs_down, "resolved", repair, timeout=60) is not None
    assert _unexpected(alert_lab) == []


def test_a_stopped_osd_pages_and_resolves(alert_lab: AlertLab) -> None:
    ceph = alert_lab.ceph
    assert ceph is not None

    def osd_down(alert: dict[str, Any]) -> bool:
        return alert["labels"].get("alertname") == "CephOSDDown"

    fault = time.monotonic()
    ceph.stop_osd()
    try:
        fired = alert_lab.receiver.wait_for(osd_down, "firing", fault, timeout=90)
        assert fired is not None, "no page for the stopped OSD"
        page = next(
            a for n in alert_lab.receiver.snapshot() for a in n.alerts("firing") if osd_down(a)
        )
        assert page["labels"]["area"] == "storage" and page["labels"]["severity"] == "warning"
        assert page["annotations"]["runbook_url"].endswith("/storage.md#cephosddown")
    finally:
        repair = time.monotonic()
        ceph.start_osd()
    assert alert_lab.receiver.wait_for(osd_down, "resolved", repair, timeout=120) is not None
    assert _unexpected(alert_lab, frozenset(CEPH_CONSEQUENCES)) == []
