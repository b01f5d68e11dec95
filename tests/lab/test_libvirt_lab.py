"""LibvirtLab runs a real private libvirtd with tiny KVM guests and survives daemon faults."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.libvirt import LibvirtLab, guest_uuid
from tests.samples import wait_until
from tests.support import need_binary

pytestmark = pytest.mark.integration

IDE_GUEST, VDA_GUEST = "lab-ide", "lab-vda"


def _need_root_and_kvm() -> None:
    """The lab runs a system libvirtd with KVM: skip (fail in CI) without root or /dev/kvm."""
    problem = (
        "the libvirt lab needs root"
        if os.geteuid() != 0
        else "the libvirt lab needs /dev/kvm"
        if not Path("/dev/kvm").exists()
        else ""
    )
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)


def domstats(lab: LibvirtLab, timeout: float = 10.0) -> dict[str, dict[str, str]]:
    """``virsh domstats`` of the lab, parsed into {domain: {key: value}}."""
    out = subprocess.run(
        ["virsh", "-c", lab.uri, "domstats"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    ).stdout
    stats: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Domain:"):
            current = stats.setdefault(line.split("'")[1], {})
        elif "=" in line:
            key, value = line.split("=", 1)
            current[key] = value
    return stats


def wait_for_block_reads(lab: LibvirtLab, timeout: float = 15.0) -> dict[str, dict[str, str]]:
    """domstats once every lab guest's BIOS has read from its first disk."""
    seen: list[dict[str, dict[str, str]]] = []

    def read() -> dict[str, dict[str, str]] | None:
        seen.append(stats := domstats(lab))
        return (
            stats
            if all(
                int(stats.get(g, {}).get("block.0.rd.reqs", "0")) > 0
                for g in (IDE_GUEST, VDA_GUEST)
            )
            else None
        )

    stats = wait_until(read, timeout=timeout, interval=0.3)
    if stats is None:
        raise AssertionError(f"guests never read their disks: {seen[-1]}")
    return stats


@pytest.fixture(scope="module")
def lab(libvirt_lab: LibvirtLab) -> Iterator[LibvirtLab]:
    """The module's private libvirtd (conftest's ``libvirt_lab``) with two running guests."""
    need_binary("virsh", "libvirt-clients")
    _need_root_and_kvm()
    lab = libvirt_lab
    try:
        lab.create_guest(IDE_GUEST, guest_uuid(IDE_GUEST), disks=("hda", "vdb"))
        lab.create_guest(VDA_GUEST, guest_uuid(VDA_GUEST), disks=("vda",))
        yield lab
    finally:
        for name in (IDE_GUEST, VDA_GUEST):
            if name in lab.guests:
                lab.destroy_guest(name)


def test_domstats_show_running_guests_with_block_and_net(lab: LibvirtLab) -> None:
    stats = wait_for_block_reads(lab)
    ide, vda = stats[IDE_GUEST], stats[VDA_GUEST]
    for s in (ide, vda):
        assert s["state.state"] == "1"  # VIR_DOMAIN_RUNNING
        assert int(s["cpu.time"]) > 0
        assert s["balloon.maximum"] == "65536"
        assert s["net.count"] == "1"
        assert s["net.0.name"].startswith("vnet")
        assert "net.0.rx.bytes" in s and "net.0.tx.pkts" in s
    assert ide["block.count"] == "2"
    assert {ide["block.0.name"], ide["block.1.name"]} == {"hda", "vdb"}
    assert vda["block.count"] == "1" and vda["block.0.name"] == "vda"
    assert int(vda["block.0.capacity"]) == 64 * 1024 * 1024


def test_guest_xml_has_the_requested_devices(lab: LibvirtLab) -> None:
    xml = lab.conn.lookupByName(IDE_GUEST).XMLDesc(0)
    assert "<target dev='hda' bus='ide'/>" in xml
    assert "<target dev='vdb' bus='virtio'/>" in xml
    assert f"<source bridge='{lab.bridge}'/>" in xml
    assert "<memballoon model='virtio'>" in xml


def test_paused_libvirtd_hangs_clients_until_resumed(lab: LibvirtLab) -> None:
    lab.pause_libvirtd()
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            domstats(lab, timeout=2)
    finally:
        lab.resume_libvirtd()
    assert domstats(lab)[VDA_GUEST]["state.state"] == "1"


def test_restarted_libvirtd_keeps_guests_running(lab: LibvirtLab) -> None:
    old_pid = lab.libvirtd_pid
    qemu_pid = int(Path(f"/var/run/libvirt/qemu/{VDA_GUEST}.pid").read_text())
    lab.restart_libvirtd()
    assert lab.libvirtd_pid != old_pid
    assert Path(f"/proc/{qemu_pid}").exists()
    stats = domstats(lab)
    assert stats[IDE_GUEST]["state.state"] == "1"
    assert stats[VDA_GUEST]["state.state"] == "1"
    assert lab.conn.lookupByName(VDA_GUEST).isActive()


def test_without_kvm_a_guest_runs_under_tcg(
    lab: LibvirtLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A machine with no /dev/kvm (nested clouds, CI runners): the guest is a TCG domain
    (type 'qemu') that runs and is counted like any other."""
    import lab.libvirt as lab_libvirt

    monkeypatch.setattr(lab_libvirt, "KVM_DEVICE", Path("/nonexistent/kvm"))
    name = "zcp-tcg-guest"
    dom = lab.create_guest(name, guest_uuid(name))
    try:
        assert "<domain type='qemu'" in dom.XMLDesc(0)
        assert dom.state()[0] == 1  # VIR_DOMAIN_RUNNING
        assert wait_until(lambda: dom.getCPUStats(True)[0]["cpu_time"] > 0, 30)
    finally:
        lab.destroy_guest(name)
