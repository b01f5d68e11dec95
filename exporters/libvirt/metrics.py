"""Pure core: grouped domain stats + cached domain XML + inventory -> metric families.

Names follow Prometheus conventions (base units, ``_total`` on counters). Every series carries
``vm_id`` (domain uuid = CloudStack VM uuid) and ``instance_name``; tenancy lives in
``zcp_vm_info``/``zcp_volume_info``/``zcp_nic_info``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporters.libvirt.parse import DomainStats, DomainXml
from zcp.inventory.metrics import inventory_info_metrics
from zcp.inventory.model import Inventory, Volume

NS = 1e-9
KIB = 1024
VM = ["vm_id", "instance_name"]
DISK = [*VM, "device", "source", "volume_id"]
NIC = [*VM, "device", "mac", "nic_id"]
# running, blocked, paused, shutting down, pm-suspended: a QEMU process exists
ACTIVE = (1, 2, 3, 4, 7)


@dataclass(frozen=True)
class Spec:
    """One family filled from one stats key: name, help, counter or gauge, scale."""

    key: str
    name: str
    help: str
    counter: bool = True
    scale: float = 1.0


CPU = [
    Spec("time", "libvirt_domain_cpu_time_seconds", "CPU time used by the domain.", True, NS),
    Spec("user", "libvirt_domain_cpu_user_seconds", "User CPU time used by the domain.", True, NS),
    Spec(
        "system",
        "libvirt_domain_cpu_system_seconds",
        "System CPU time used by the domain.",
        True,
        NS,
    ),
]
VCPU = [
    Spec("time", "libvirt_domain_vcpu_time_seconds", "Time a vCPU spent running.", True, NS),
    Spec(
        "wait",
        "libvirt_domain_vcpu_wait_seconds",
        "Time a vCPU spent waiting on I/O or for the host to wake it.",
        True,
        NS,
    ),
    Spec(
        "delay",
        "libvirt_domain_vcpu_delay_seconds",
        "Time a vCPU was ready but waited on the host run queue (steal).",
        True,
        NS,
    ),
]
BALLOON = [
    Spec(
        "maximum",
        "libvirt_domain_memory_maximum_bytes",
        "Maximum memory of the domain.",
        False,
        KIB,
    ),
    Spec("current", "libvirt_domain_memory_balloon_bytes", "Current balloon size.", False, KIB),
    Spec(
        "rss",
        "libvirt_domain_memory_rss_bytes",
        "Resident set size of the QEMU process.",
        False,
        KIB,
    ),
    Spec(
        "available",
        "libvirt_domain_memory_available_bytes",
        "Memory the guest sees (guest-reported, needs the balloon driver).",
        False,
        KIB,
    ),
    Spec(
        "unused",
        "libvirt_domain_memory_unused_bytes",
        "Memory unused by the guest (guest-reported).",
        False,
        KIB,
    ),
    Spec(
        "usable",
        "libvirt_domain_memory_usable_bytes",
        "Memory the guest can use without swapping (guest-reported).",
        False,
        KIB,
    ),
    Spec(
        "disk_caches",
        "libvirt_domain_memory_disk_caches_bytes",
        "Guest memory used for disk caches (guest-reported).",
        False,
        KIB,
    ),
    Spec(
        "swap_in",
        "libvirt_domain_memory_swap_in_bytes",
        "Memory swapped in by the guest.",
        True,
        KIB,
    ),
    Spec(
        "swap_out",
        "libvirt_domain_memory_swap_out_bytes",
        "Memory swapped out by the guest.",
        True,
        KIB,
    ),
    Spec("major_fault", "libvirt_domain_memory_major_faults", "Guest major page faults."),
    Spec("minor_fault", "libvirt_domain_memory_minor_faults", "Guest minor page faults."),
]
BLOCK = [
    Spec("rd.bytes", "libvirt_domain_block_read_bytes", "Bytes read from a disk."),
    Spec("rd.reqs", "libvirt_domain_block_read_requests", "Read requests on a disk."),
    Spec("rd.times", "libvirt_domain_block_read_time_seconds", "Time spent reading.", True, NS),
    Spec("wr.bytes", "libvirt_domain_block_write_bytes", "Bytes written to a disk."),
    Spec("wr.reqs", "libvirt_domain_block_write_requests", "Write requests on a disk."),
    Spec("wr.times", "libvirt_domain_block_write_time_seconds", "Time spent writing.", True, NS),
    Spec("fl.reqs", "libvirt_domain_block_flush_requests", "Flush requests on a disk."),
    Spec("fl.times", "libvirt_domain_block_flush_time_seconds", "Time spent flushing.", True, NS),
    Spec("capacity", "libvirt_domain_block_capacity_bytes", "Disk size seen by the guest.", False),
    Spec(
        "allocation",
        "libvirt_domain_block_allocation_bytes",
        "Highest allocated extent of the disk image.",
        False,
    ),
    Spec(
        "physical", "libvirt_domain_block_physical_bytes", "Physical size of the disk image.", False
    ),
]
NET = [
    Spec("rx.bytes", "libvirt_domain_interface_receive_bytes", "Bytes received by a vNIC."),
    Spec("rx.pkts", "libvirt_domain_interface_receive_packets", "Packets received by a vNIC."),
    Spec("rx.errs", "libvirt_domain_interface_receive_errors", "Receive errors on a vNIC."),
    Spec("rx.drop", "libvirt_domain_interface_receive_drops", "Received packets dropped."),
    Spec("tx.bytes", "libvirt_domain_interface_transmit_bytes", "Bytes sent by a vNIC."),
    Spec("tx.pkts", "libvirt_domain_interface_transmit_packets", "Packets sent by a vNIC."),
    Spec("tx.errs", "libvirt_domain_interface_transmit_errors", "Transmit errors on a vNIC."),
    Spec("tx.drop", "libvirt_domain_interface_transmit_drops", "Sent packets dropped."),
]


def _family(spec: Spec, labels: list[str]) -> CounterMetricFamily | GaugeMetricFamily:
    if spec.counter:
        return CounterMetricFamily(spec.name, spec.help, labels=labels)
    return GaugeMetricFamily(spec.name, spec.help, labels=labels)


class _Families:
    """Families of one spec list, filled from per-object value dicts."""

    def __init__(self, specs: list[Spec], labels: list[str]) -> None:
        self.specs = specs
        self.families = [_family(s, labels) for s in specs]

    def add(self, labels: list[str], values: Mapping[str, int]) -> None:
        for spec, fam in zip(self.specs, self.families, strict=True):
            if spec.key in values:
                fam.add_metric(labels, values[spec.key] * spec.scale)


def volume_for_disk(inv: Inventory, vm_id: str, device: str, source: str) -> Volume | None:
    """The CloudStack volume behind a disk: by RBD image, else by the device's slot.

    CloudStack's KVM agent names disks ``<prefix><'a' + deviceId>`` (vda, vdb, hda, ...).
    """
    if source:
        vol = inv.volume_by_rbd_image.get(source)
        if vol is not None:
            return vol
    if len(device) >= 3 and device[-1].isalpha():
        slot = ord(device[-1]) - ord("a")
        for vol in inv.volumes_by_vm.get(vm_id, ()):
            if vol.device_id == slot:
                return vol
    return None


def _unknown_vm_labels(dom: DomainStats, xml: DomainXml | None, host: str) -> list[str]:
    """``zcp_vm_info`` labels for a VM the inventory does not know: metadata or empty."""
    md = xml.cloudstack if xml is not None else None
    if md is None:
        return [dom.uuid, dom.name, "", "", "", "", "", "", "", "", host, "", "", ""]
    memory = str(int(md.memory_mib) * 1024 * 1024) if md.memory_mib.isdigit() else ""
    return [
        dom.uuid,
        dom.name,
        md.vm_name,
        md.account_id,
        md.account,
        md.domain_id,
        md.domain_path,
        md.project_id,
        md.project,
        md.zone,
        host,
        md.service_offering,
        md.vcpus,
        memory,
    ]


def build_metrics(
    domains: Iterable[DomainStats], xml: Mapping[str, DomainXml], inv: Inventory, host: str
) -> Iterator[Metric]:
    """All per-domain families for one collection."""
    state = GaugeMetricFamily(
        "libvirt_domain_state",
        "Domain state (virDomainState: 0 nostate, 1 running, 2 blocked, 3 paused, 4 shutdown, "
        "5 shutoff, 6 crashed, 7 pmsuspended).",
        labels=VM,
    )
    reason = GaugeMetricFamily(
        "libvirt_domain_state_reason",
        "Reason code of the domain state (virDomain<State>Reason).",
        labels=VM,
    )
    vcpus = GaugeMetricFamily("libvirt_domain_vcpus", "vCPUs currently online.", labels=VM)
    vcpus_max = GaugeMetricFamily("libvirt_domain_vcpus_maximum", "Maximum vCPUs.", labels=VM)
    vcpu_state = GaugeMetricFamily(
        "libvirt_domain_vcpu_state",
        "vCPU state (0 offline, 1 running, 2 blocked).",
        labels=[*VM, "vcpu"],
    )
    cpu = _Families(CPU, VM)
    vcpu = _Families(VCPU, [*VM, "vcpu"])
    balloon = _Families(BALLOON, VM)
    block = _Families(BLOCK, DISK)
    net = _Families(NET, NIC)
    extra_vm_info: list[list[str]] = []
    known: list[str] = []

    for dom in domains:
        ids = [dom.uuid, dom.name]
        if dom.state is not None:
            state.add_metric(ids, dom.state)
            reason.add_metric(ids, dom.state_reason or 0)
        dxml = xml.get(dom.uuid)
        vm = inv.vm_by_id.get(dom.uuid)
        if vm is not None:
            known.append(dom.uuid)
        else:
            extra_vm_info.append(_unknown_vm_labels(dom, dxml, host))
        if dom.state not in ACTIVE:
            continue  # a domain that is off reports leftover cpu/block values: not counters
        cpu.add(ids, dom.cpu)
        balloon.add(ids, dom.balloon)
        if dom.vcpu_current is not None:
            vcpus.add_metric(ids, dom.vcpu_current)
            vcpus_max.add_metric(ids, dom.vcpu_maximum or dom.vcpu_current)
        for index, values in sorted(dom.vcpus.items()):
            vcpu.add([*ids, str(index)], values)
            if "state" in values:
                vcpu_state.add_metric([*ids, str(index)], values["state"])
        for b in dom.blocks:
            disk = dxml.disks.get(b.device) if dxml is not None else None
            source = (disk.source if disk is not None else "") or b.path
            vol = volume_for_disk(inv, dom.uuid, b.device, source)
            block.add([*ids, b.device, source, vol.id if vol else ""], b.values)
        for n in dom.nets:
            vnic = dxml.nics.get(n.device) if dxml is not None else None
            mac = vnic.mac if vnic is not None else ""
            inv_nic = inv.nic_by_mac.get(mac) if mac else None
            net.add([*ids, n.device, mac, inv_nic.id if inv_nic else ""], n.values)

    yield from (state, reason, vcpus, vcpus_max, vcpu_state)
    for group in (cpu, vcpu, balloon, block, net):
        yield from group.families
    for fam in inventory_info_metrics(inv, known):
        if fam.name == "zcp_vm_info" and isinstance(fam, GaugeMetricFamily):
            for labels in extra_vm_info:
                fam.add_metric(labels, 1)
        yield fam
