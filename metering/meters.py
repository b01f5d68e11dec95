"""The meters: what is billed, from which families, computed how. Declared here, once.

Each meter names the CloudStack usage type it reconciles with, the families it reads (from the
exporters and the inventory service), the labels that key a resource (CloudStack ids, never
host or instance), how the quantity is computed, and its base unit (exact, what the database
keeps) and billing unit (what the price book prices; ``factor`` base units make one).

Kinds:
* ``counter``: the exact, reset-aware delta of raw samples in the period, per series, summed
  over the series of one resource (a migrated VM has one series per host, each its own
  counter).
* ``gauge``: the time integral of a step function (each sample holds until the next one), the
  series of one resource combined by their maximum (two series of one resource never double
  it).
* ``state``: the time a state series is in one of ``states``, optionally weighted by a second
  family (vCPUs, memory) of the same series.
* ``presence``: the time an (info) series exists at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

Kind = Literal["counter", "gauge", "state", "presence"]

GIB = Decimal(2) ** 30
HOUR = Decimal(3600)


@dataclass(frozen=True)
class Meter:
    """One billable quantity."""

    name: str
    usage_type: str  # CloudStack usage type it reconciles with (UsageTypes.java)
    usage_type_id: int
    kind: Kind
    family: str  # the series read (a PromQL selector)
    key: tuple[str, ...]  # labels that identify the resource, first = resource id
    owner: str  # how the account is found: "label" (account_id on the series) or an info family
    base_unit: str
    unit: str  # the billing unit the price book prices (FOCUS ConsumedUnit)
    factor: Decimal  # base units per billing unit
    description: str
    states: tuple[str, ...] = ()  # kind "state": values that count
    state_label: str = ""  # kind "state": compare this label, not the sample value
    weight: str = ""  # kind "state": a family of the same series multiplying the time
    classes: bool = False  # priced per storage class (label storage_class in ``key``)
    optional: bool = False  # off unless the config turns it on

    def counts(self, labels: Mapping[str, str], value: Decimal) -> bool:
        """Kind "state": does a sample (of a series with ``labels``) count as in ``states``?
        (the state label's value, or the sample value: libvirt's states are integers)"""
        if self.state_label:
            return labels.get(self.state_label, "") in self.states
        text = str(int(value)) if value == value.to_integral_value() else str(value)
        return text in self.states

    @property
    def resource_label(self) -> str:
        """The label holding the resource id (the first key label)."""
        return self.key[0]


VM_OWNER = "zcp_vm_info"
VOLUME_OWNER = "zcp_volume_info"
NIC_OWNER = "zcp_nic_info"

# libvirt's VIR_DOMAIN_RUNNING is 1 (libvirt_domain_state)
RUNNING = ("1",)

METERS: tuple[Meter, ...] = (
    Meter(
        "vm.running_hours",
        "RUNNING_VM",
        1,
        "state",
        "libvirt_domain_state",
        ("vm_id",),
        VM_OWNER,
        "s",
        "Hours",
        HOUR,
        "Hours a VM runs on a hypervisor (libvirt state running).",
        states=RUNNING,
    ),
    Meter(
        "vm.vcpu_hours",
        "RUNNING_VM",
        1,
        "state",
        "libvirt_domain_state",
        ("vm_id",),
        VM_OWNER,
        "vcpu*s",
        "vCPU-Hours",
        HOUR,
        "Running hours times the VM's vCPUs.",
        states=RUNNING,
        weight="libvirt_domain_vcpus",
    ),
    Meter(
        "vm.memory_gib_hours",
        "RUNNING_VM",
        1,
        "state",
        "libvirt_domain_state",
        ("vm_id",),
        VM_OWNER,
        "byte*s",
        "GiB-Hours",
        GIB * HOUR,
        "Running hours times the VM's memory.",
        states=RUNNING,
        weight="libvirt_domain_memory_maximum_bytes",
    ),
    Meter(
        "vm.allocated_hours",
        "ALLOCATED_VM",
        2,
        "state",
        'zcp_vm_state{job="zcp-inventory"}',
        ("vm_id",),
        "label",
        "s",
        "Hours",
        HOUR,
        "Hours a VM exists in CloudStack, running or stopped (zcp_vm_state).",
        states=("Running", "Stopped", "Starting", "Stopping", "Migrating"),
        state_label="state",
    ),
    Meter(
        "volume.gib_hours",
        "VOLUME",
        6,
        "gauge",
        "ceph_rbd_image_provisioned_bytes",
        ("volume_id", "storage_class"),
        VOLUME_OWNER,
        "byte*s",
        "GiB-Hours",
        GIB * HOUR,
        "Provisioned size of a volume's RBD image over time, by storage class.",
        classes=True,
    ),
    Meter(
        "snapshot.gib_hours",
        "SNAPSHOT",
        9,
        "gauge",
        "ceph_rbd_image_snapshot_used_bytes",
        ("volume_id", "storage_class"),
        VOLUME_OWNER,
        "byte*s",
        "GiB-Hours",
        GIB * HOUR,
        "Bytes a volume's snapshots hold over time, by storage class.",
        classes=True,
    ),
    Meter(
        "object.gib_hours",
        "BUCKET",
        29,
        "gauge",
        'ceph_rgw_user_stored_bytes{account_id!=""}',
        ("user",),
        "label",
        "byte*s",
        "GiB-Hours",
        GIB * HOUR,
        "Bytes an RGW user stores over time.",
    ),
    Meter(
        "object.requests",
        "BUCKET",
        29,
        "counter",
        'ceph_rgw_user_ops_total{account_id!=""}',
        ("user",),
        "label",
        "request",
        "Requests",
        Decimal(1),
        "S3 requests of an RGW user.",
    ),
    Meter(
        "object.egress_bytes",
        "BUCKET",
        29,
        "counter",
        'ceph_rgw_user_sent_bytes_total{account_id!=""}',
        ("user",),
        "label",
        "byte",
        "GiB",
        GIB,
        "Bytes an RGW user's clients downloaded.",
    ),
    # libvirt reports interface counters from the guest's side (it swaps the tap's): transmit
    # is what the guest sends (checked on a real guest in the tests)
    Meter(
        "network.bytes_sent",
        "NETWORK_BYTES_SENT",
        4,
        "counter",
        'libvirt_domain_interface_transmit_bytes_total{nic_id!=""}',
        ("nic_id",),
        NIC_OWNER,
        "byte",
        "GiB",
        GIB,
        "Bytes a vNIC's guest sent.",
    ),
    Meter(
        "network.bytes_received",
        "NETWORK_BYTES_RECEIVED",
        5,
        "counter",
        'libvirt_domain_interface_receive_bytes_total{nic_id!=""}',
        ("nic_id",),
        NIC_OWNER,
        "byte",
        "GiB",
        GIB,
        "Bytes a vNIC's guest received.",
    ),
    Meter(
        "ip.hours",
        "IP_ADDRESS",
        3,
        "presence",
        'zcp_public_ip_info{job="zcp-inventory"}',
        ("ip_id",),
        "label",
        "s",
        "Hours",
        HOUR,
        "Hours a public IP address is allocated to an account.",
    ),
    Meter(
        "disk.read_requests",
        "VM_DISK_IO_READ",
        21,
        "counter",
        'libvirt_domain_block_read_requests_total{volume_id!=""}',
        ("volume_id",),
        VOLUME_OWNER,
        "request",
        "Requests",
        Decimal(1),
        "Read requests of a volume.",
        optional=True,
    ),
    Meter(
        "disk.write_requests",
        "VM_DISK_IO_WRITE",
        22,
        "counter",
        'libvirt_domain_block_write_requests_total{volume_id!=""}',
        ("volume_id",),
        VOLUME_OWNER,
        "request",
        "Requests",
        Decimal(1),
        "Write requests of a volume.",
        optional=True,
    ),
)

BY_NAME = {m.name: m for m in METERS}
CLASSES = ("fast", "flow", "bulk")


def enabled(optional: tuple[str, ...] = ()) -> tuple[Meter, ...]:
    """The meters that run: every non-optional one plus the optional ones named."""
    return tuple(m for m in METERS if not m.optional or m.name in optional)
