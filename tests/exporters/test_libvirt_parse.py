"""The libvirt exporter's pure core, fed recorded real libvirt output (tests/fixtures/libvirt)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client.core import Metric

from exporters.libvirt.metrics import build_metrics, volume_for_disk
from exporters.libvirt.parse import (
    DomainStats,
    DomainXml,
    DomainXmlError,
    group_stats,
    parse_domain_xml,
)
from zcp.inventory.model import VM, Inventory, Tenant, Volume

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "libvirt"
RUNNING_VM = "6f1f3a52-8c4e-4d27-9b1a-2f0c5e7d9a01"  # i-2-9-VM
META_VM = "0c6d2b8e-3f41-4a5c-8e2d-7b9a1c4f6e10"  # i-2-10-VM, hda + vdb, cloudstack metadata
OFF_VM = "9a4e7c21-6d3b-4f80-a5c2-1e8b0d3f7c11"  # i-2-11-VM, shut off, RBD disk


@pytest.fixture(scope="module")
def records() -> list[dict[str, object]]:
    return list(json.loads((FIXTURES / "all_domain_stats.json").read_text()))


@pytest.fixture(scope="module")
def grouped(records: list[dict[str, object]]) -> dict[str, DomainStats]:
    return {
        str(r["uuid"]): group_stats(str(r["uuid"]), str(r["name"]), r["stats"])  # type: ignore[arg-type]
        for r in records
    }


@pytest.fixture(scope="module")
def xmls() -> dict[str, DomainXml]:
    parsed = [parse_domain_xml(p.read_text()) for p in sorted(FIXTURES.glob("*.xml"))]
    return {d.uuid: d for d in parsed}


def raw(records: list[dict[str, object]], uuid: str) -> dict[str, object]:
    return next(r["stats"] for r in records if r["uuid"] == uuid)  # type: ignore[return-value]


def samples(families: list[Metric], name: str) -> list[tuple[dict[str, str], float]]:
    return [(s.labels, s.value) for f in families for s in f.samples if s.name == name]


def test_xml_disks_keep_their_source_whatever_their_name(xmls: dict[str, DomainXml]) -> None:
    meta = xmls[META_VM]
    assert set(meta.disks) == {"hda", "vdb"}
    assert meta.disks["hda"].bus == "ide" and meta.disks["hda"].kind == "file"
    assert meta.disks["hda"].source.endswith("i-2-10-VM-hda.qcow2")
    rbd = xmls[OFF_VM].disks["vda"]
    assert (rbd.kind, rbd.protocol) == ("network", "rbd")
    assert rbd.source == "rbd-fast/2c1a7f0e-5b8d-4c3e-9f61-0d2e4a6b8c10"


def test_xml_nics_and_cloudstack_metadata(xmls: dict[str, DomainXml]) -> None:
    meta = xmls[META_VM]
    assert len(meta.nics) == 2 and all(n.device.startswith("vnet") for n in meta.nics.values())
    assert all(mac == mac.lower() for mac in meta.nics_by_mac)
    md = meta.cloudstack
    assert md is not None
    assert (md.account, md.account_id, md.project, md.zone) == ("acme", "a-uuid", "web", "zone1")
    assert (md.service_offering, md.vcpus, md.memory_mib) == ("medium", "2", "2048")
    assert xmls[RUNNING_VM].cloudstack is None


def test_bad_xml_is_a_clear_error() -> None:
    with pytest.raises(DomainXmlError, match="not well-formed"):
        parse_domain_xml("<domain><uuid>x</uuid>")
    with pytest.raises(DomainXmlError, match="not a libvirt domain"):
        parse_domain_xml("<network><name>x</name></network>")


def test_group_stats_of_a_running_guest(
    records: list[dict[str, object]], grouped: dict[str, DomainStats]
) -> None:
    stats, rec = raw(records, META_VM), grouped[META_VM]
    assert rec.groups == {"state", "cpu", "balloon", "vcpu", "block", "interface"}
    assert rec.state == 1 and rec.cpu["time"] == stats["cpu.time"]
    assert [b.device for b in rec.blocks] == ["hda", "vdb"]
    assert rec.blocks[0].values["rd.bytes"] == stats["block.0.rd.bytes"] > 0
    assert [n.device for n in rec.nets] == [stats["net.0.name"], stats["net.1.name"]]
    assert rec.vcpus[0]["time"] == stats["vcpu.0.time"]
    assert rec.vcpus[0]["delay"] == stats["vcpu.0.delay"]


def test_group_stats_of_a_shut_off_guest(grouped: dict[str, DomainStats]) -> None:
    rec = grouped[OFF_VM]
    assert rec.state == 5 and rec.nets == [] and "balloon" in rec.groups
    assert [b.device for b in rec.blocks] == ["vda"] and rec.blocks[0].values == {}


def test_backing_chain_layers_are_not_disks() -> None:
    # with VIR_CONNECT_GET_ALL_DOMAINS_STATS_BACKING each layer of a chain repeats the name
    rec = group_stats(
        "u",
        "n",
        {
            "block.count": 2,
            "block.0.name": "vda",
            "block.0.rd.reqs": 5,
            "block.0.backingIndex": 2,
            "block.1.name": "vda",
            "block.1.backingIndex": 1,
        },
    )
    assert [(b.device, b.values.get("rd.reqs")) for b in rec.blocks] == [("vda", 5)]


def inventory() -> Inventory:
    tenant = Tenant(account_id="acct", name="acme", domain_id="dom", domain_path="ROOT/c")
    vm = VM(id=META_VM, instance_name="i-2-10-VM", name="web-1", account_id="acct", vcpus=2)
    vols = (
        Volume(id="vol-root", name="ROOT-10", account_id="acct", vm_id=META_VM, device_id=0),
        Volume(id="vol-data", name="DATA-10", account_id="acct", vm_id=META_VM, device_id=1),
        Volume(
            id="vol-rbd",
            name="ROOT-11",
            account_id="acct",
            rbd_image="rbd-fast/2c1a7f0e-5b8d-4c3e-9f61-0d2e4a6b8c10",
        ),
    )
    return Inventory(tenants=(tenant,), vms=(vm,), volumes=vols)


def test_families_units_and_identity(
    records: list[dict[str, object]], grouped: dict[str, DomainStats], xmls: dict[str, DomainXml]
) -> None:
    fams = list(build_metrics(grouped.values(), xmls, inventory(), "kvm01"))
    stats = raw(records, META_VM)
    ids = {"vm_id": META_VM, "instance_name": "i-2-10-VM"}
    ((labels, cpu),) = [
        s
        for s in samples(fams, "libvirt_domain_cpu_time_seconds_total")
        if s[0]["vm_id"] == META_VM
    ]
    assert labels == ids and cpu == pytest.approx(stats["cpu.time"] / 1e9)  # type: ignore[operator]
    mem = dict((s[0]["vm_id"], s[1]) for s in samples(fams, "libvirt_domain_memory_rss_bytes"))
    assert mem[META_VM] == stats["balloon.rss"] * 1024  # type: ignore[operator]
    disks = {
        s[0]["device"]: s[0]
        for s in samples(fams, "libvirt_domain_block_read_bytes_total")
        if s[0]["vm_id"] == META_VM
    }
    assert disks["hda"]["volume_id"] == "vol-root" and disks["vdb"]["volume_id"] == "vol-data"
    assert disks["hda"]["source"].endswith("-hda.qcow2")
    # the shut-off guest's RBD disk is matched by its pool/image
    rbd = [
        s[0]
        for s in samples(fams, "libvirt_domain_block_capacity_bytes")
        if s[0]["vm_id"] == OFF_VM
    ]
    assert rbd == []  # no capacity for a disk of a guest that is off
    assert (
        volume_for_disk(inventory(), OFF_VM, "vda", xmls[OFF_VM].disks["vda"].source).id
        == "vol-rbd"
    )  # type: ignore[union-attr]
    nets = samples(fams, "libvirt_domain_interface_receive_packets_total")
    assert {s[0]["mac"] for s in nets if s[0]["vm_id"] == META_VM} == set(xmls[META_VM].nics_by_mac)
    state = dict((s[0]["vm_id"], s[1]) for s in samples(fams, "libvirt_domain_state"))
    assert state == {RUNNING_VM: 1, META_VM: 1, OFF_VM: 5}


def test_vm_info_known_from_metadata_and_unknown(
    grouped: dict[str, DomainStats], xmls: dict[str, DomainXml]
) -> None:
    fams = list(build_metrics(grouped.values(), xmls, inventory(), "kvm01"))
    info = {s[0]["vm_id"]: s[0] for s in samples(fams, "zcp_vm_info")}
    assert info[META_VM]["account"] == "acme" and info[META_VM]["vm_name"] == "web-1"
    assert info[META_VM]["domain_path"] == "ROOT/c"  # the inventory wins over metadata
    # no inventory entry, no metadata: all counters stay, tenant labels are empty
    assert info[RUNNING_VM]["account_id"] == "" and info[RUNNING_VM]["host"] == "kvm01"
    assert samples(fams, "libvirt_domain_vcpu_wait_seconds_total")
    # metadata only: identity comes from CloudStack's own <metadata>
    fams = list(build_metrics(grouped.values(), xmls, Inventory(), "kvm01"))
    info = {s[0]["vm_id"]: s[0] for s in samples(fams, "zcp_vm_info")}
    assert info[META_VM]["account"] == "acme" and info[META_VM]["account_id"] == "a-uuid"
    assert info[META_VM]["memory_bytes"] == str(2048 * 2**20)
    assert len(info) == 3
