"""Real faults page on-call and the page resolves after the repair, end to end on real daemons:
KVM guests on a private libvirtd, the libvirt exporter, Prometheus with the built rules,
Alertmanager with the built config, and a webhook receiver (lab/alerting.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.alerting import HOST, AlertLab
from lab.ceph import CephLab
from lab.libvirt import LibvirtLab
from lab.ovs import OvsLab
from lab.procs import copy_logs
from tests.conftest import need_binary

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


def test_a_destroyed_guest_pages_with_its_identity_and_resolves(alert_lab: AlertLab) -> None:
    assert alert_lab.inventory is not None
    vm = alert_lab.inventory.vms[0]
    # the stack is healthy: nothing pages before the fault
    time.sleep(5)
    assert not [a for n in alert_lab.receiver.snapshot() for a in n.alerts("firing")]

    def this_vm(alert: dict[str, Any]) -> bool:
        labels = alert["labels"]
        return labels.get("alertname") == "VMDownUnexpectedly" and labels.get("vm_id") == vm.id

    fault = time.monotonic()
    alert_lab.lab.destroy_guest(vm.instance_name)
    fired = alert_lab.receiver.wait_for(this_vm, "firing", fault, timeout=60)
    assert fired is not None, "no page for the destroyed guest"
    page = next(a for n in alert_lab.receiver.snapshot() for a in n.alerts("firing") if this_vm(a))
    assert page["labels"]["severity"] == "critical" and page["labels"]["area"] == "compute"
    assert page["labels"]["instance_name"] == vm.instance_name
    assert page["labels"]["host"] == HOST and page["labels"]["account"] == "acme"
    assert page["annotations"]["runbook_url"].endswith("/compute.md#vmdownunexpectedly")
    assert vm.id in page["annotations"]["description"]
    # only that VM pages
    others = {
        a["labels"].get("vm_id")
        for n in alert_lab.receiver.snapshot()
        for a in n.alerts("firing")
        if a["labels"]["alertname"] == "VMDownUnexpectedly"
    }
    assert others == {vm.id}

    repair = time.monotonic()
    alert_lab.boot(vm.id)
    resolved = alert_lab.receiver.wait_for(this_vm, "resolved", repair, timeout=60)
    assert resolved is not None, "the page never resolved after the guest came back"
    assert _unexpected(alert_lab) == []


def test_a_stopped_exporter_pages_once_and_hides_nothing_else(alert_lab: AlertLab) -> None:
    def exporter_down(alert: dict[str, Any]) -> bool:
        return alert["labels"].get("alertname") == "LibvirtExporterDown"

    before = len(alert_lab.receiver.snapshot())
    fault = time.monotonic()
    alert_lab.exporter.stop()
    try:
        fired = alert_lab.receiver.wait_for(exporter_down, "firing", fault, timeout=60)
        assert fired is not None, "no page for the stopped exporter"
        page = next(
            a for n in alert_lab.receiver.snapshot() for a in n.alerts("firing") if exporter_down(a)
        )
        assert page["labels"]["host"] == HOST and page["labels"]["severity"] == "critical"
        assert page["annotations"]["runbook_url"].endswith("/compute.md#libvirtexporterdown")
        # blind, not down: the VMs of the host must not page while their exporter is away
        time.sleep(6)
        vm_pages = [
            a
            for n in alert_lab.receiver.snapshot()[before:]
            for a in n.alerts("firing")
            if a["labels"]["alertname"].startswith("VM")
        ]
        assert vm_pages == []
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
