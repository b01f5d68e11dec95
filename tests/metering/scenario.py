"""Six hours of history with exact, hand-computed answers: a VM migrating hosts mid-hour, a VM
deleted, a counter reset, a 20-minute scrape gap inside an hour and two across hour edges, a
volume resized mid-hour, samples exactly on the hour edges, and a month boundary in
America/New_York (DST ends at its start).

Samples every minute from 2026-11-01T00:00Z. Account A bills in UTC, account B in
America/New_York, where November starts at 04:00Z: B's first four hours are October's.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from lab.history import HistorySeries

T0 = datetime(2026, 11, 1, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)
HOURS = 6
END = T0 + timedelta(hours=HOURS)
MIN = 60_000
A, B = "acct-a", "acct-b"
GIB = 2**30

PRICES = {
    "currency": "EUR",
    "timezone": "UTC",
    "proration": "calendar",
    "accounts": {B: {"timezone": "America/New_York"}},
    "prices": [
        {
            "meter": "vm.running_hours",
            "price": "0.0040",
            "from": "2026-01-01",
            "to": "2026-11-01T02:00:00Z",
        },
        {"meter": "vm.running_hours", "price": "0.0050", "from": "2026-11-01T02:00:00Z"},
        {"meter": "vm.vcpu_hours", "price": "0.0120", "from": "2026-01-01"},
        {"meter": "vm.memory_gib_hours", "price": "0.0030", "from": "2026-01-01"},
        {"meter": "vm.allocated_hours", "price": "0.0010", "from": "2026-01-01"},
        {
            "meter": "volume.gib_hours",
            "class": "fast",
            "price": "0.16",
            "per": "month",
            "from": "2026-01-01",
        },
        {
            "meter": "volume.gib_hours",
            "class": "bulk",
            "price": "0.03",
            "per": "month",
            "from": "2026-01-01",
        },
        {"meter": "network.bytes_sent", "price": "0.01", "from": "2026-01-01"},
        {"meter": "network.bytes_received", "price": "0.02", "from": "2026-01-01"},
        {"meter": "ip.hours", "price": "0.0050", "from": "2026-01-01"},
    ],
}


def _at(k: int) -> int:
    return T0_MS + k * MIN


def _series(
    name: str, ks: range | list[int], value: object, kind: str = "gauge", **labels: str
) -> HistorySeries:
    fn = value if callable(value) else (lambda _k: value)
    return HistorySeries(
        name, tuple(sorted(labels.items())), tuple((_at(k), fn(k)) for k in ks), kind
    )


def history() -> list[HistorySeries]:
    """Every series of the scenario."""
    lv1 = {"job": "libvirt", "vm_id": "vm1", "instance_name": "i-2-1-VM"}
    lv2 = {"job": "libvirt", "vm_id": "vm2", "instance_name": "i-3-2-VM"}
    lv3 = {"job": "libvirt", "vm_id": "vm3", "instance_name": "i-2-3-VM"}
    kvm1, kvm2 = range(0, 151), range(149, 360)  # vm1 moves to kvm2, overlap 02:29-02:30
    vm2 = range(0, 190)  # deleted after 03:09
    full = range(0, 360)
    nic2 = [k for k in vm2 if not 121 <= k <= 139]  # 02:01-02:19 missing: a 20-min gap
    # gaps across an hour's edge: nic1 (on kvm2) 03:50-04:09, vol1 04:50-05:09
    nic1 = [k for k in kvm2 if not 230 <= k <= 249]
    vol1 = [k for k in full if not 290 <= k <= 309]
    out = [
        _series("libvirt_domain_state", kvm1, 1, host="kvm1", **lv1),
        _series("libvirt_domain_state", kvm2, 1, host="kvm2", **lv1),
        _series("libvirt_domain_vcpus", kvm1, 2, host="kvm1", **lv1),
        _series("libvirt_domain_vcpus", kvm2, 2, host="kvm2", **lv1),
        _series("libvirt_domain_memory_maximum_bytes", kvm1, GIB, host="kvm1", **lv1),
        _series("libvirt_domain_memory_maximum_bytes", kvm2, GIB, host="kvm2", **lv1),
        _series("libvirt_domain_state", vm2, 1, host="kvm1", **lv2),
        _series("libvirt_domain_vcpus", vm2, 4, host="kvm1", **lv2),
        _series("libvirt_domain_memory_maximum_bytes", vm2, 2 * GIB, host="kvm1", **lv2),
        _series("libvirt_domain_state", full, 5, host="kvm1", **lv3),  # shut off
        _series("libvirt_domain_vcpus", full, 1, host="kvm1", **lv3),
        _series("libvirt_domain_memory_maximum_bytes", full, GIB, host="kvm1", **lv3),
        # vNIC counters: nic1 restarts from 0 on kvm2 (a new QEMU process), nic2 resets at
        # 01:30 and has the gap
        _series(
            "libvirt_domain_interface_transmit_bytes_total",
            kvm1,
            lambda k: 1000 * k,
            "counter",
            host="kvm1",
            device="vnet0",
            nic_id="nic1",
            mac="02:00:00:00:00:01",
            **lv1,
        ),
        _series(
            "libvirt_domain_interface_transmit_bytes_total",
            nic1,
            lambda k: 500 * (k - 149),
            "counter",
            host="kvm2",
            device="vnet3",
            nic_id="nic1",
            mac="02:00:00:00:00:01",
            **lv1,
        ),
        _series(
            "libvirt_domain_interface_receive_bytes_total",
            nic2,
            lambda k: 2000 * k if k < 90 else 2000 * (k - 90) + 100,
            "counter",
            host="kvm1",
            device="vnet1",
            nic_id="nic2",
            mac="02:00:00:00:00:02",
            **lv2,
        ),
        # RBD images: vol1 resized 10 -> 20 GiB at 01:30, vol2 5 GiB
        _series(
            "ceph_rbd_image_provisioned_bytes",
            vol1,
            lambda k: 10 * GIB if k < 90 else 20 * GIB,
            job="zcp-ceph",
            pool="rbd-fast",
            image="volume-1",
            volume_id="vol1",
            storage_class="fast",
        ),
        _series(
            "ceph_rbd_image_provisioned_bytes",
            full,
            5 * GIB,
            job="zcp-ceph",
            pool="rbd-bulk",
            image="volume-2",
            volume_id="vol2",
            storage_class="bulk",
        ),
        # identity and state from the inventory service
        _series("zcp_vm_info", full, 1, job="zcp-inventory", vm_id="vm1", account_id=A),
        _series("zcp_vm_info", vm2, 1, job="zcp-inventory", vm_id="vm2", account_id=B),
        _series("zcp_vm_info", full, 1, job="zcp-inventory", vm_id="vm3", account_id=A),
        _series(
            "zcp_vm_state", full, 1, job="zcp-inventory", vm_id="vm1", account_id=A, state="Running"
        ),
        _series(
            "zcp_vm_state", vm2, 1, job="zcp-inventory", vm_id="vm2", account_id=B, state="Running"
        ),
        _series(
            "zcp_vm_state", full, 1, job="zcp-inventory", vm_id="vm3", account_id=A, state="Stopped"
        ),
        _series("zcp_volume_info", full, 1, job="zcp-inventory", volume_id="vol1", account_id=A),
        _series("zcp_volume_info", full, 1, job="zcp-inventory", volume_id="vol2", account_id=B),
        _series("zcp_nic_info", full, 1, job="zcp-inventory", nic_id="nic1", account_id=A),
        _series("zcp_nic_info", vm2, 1, job="zcp-inventory", nic_id="nic2", account_id=B),
        _series(
            "zcp_public_ip_info",
            full,
            1,
            job="zcp-inventory",
            ip_id="ip1",
            account_id=A,
            address="203.0.113.10",
        ),
    ]
    return out


def expected() -> dict[tuple[str, str, int], Decimal]:
    """(meter, resource, hour index) -> quantity in the meter's base unit, by hand."""
    h = Decimal(3600)
    e: dict[tuple[str, str, int], Decimal] = {}
    for i in range(HOURS):
        e[("vm.running_hours", "vm1", i)] = h  # the two hosts' series cover every second once
        e[("vm.vcpu_hours", "vm1", i)] = 2 * h
        e[("vm.memory_gib_hours", "vm1", i)] = GIB * h
        e[("vm.allocated_hours", "vm1", i)] = h
        e[("vm.allocated_hours", "vm3", i)] = h  # stopped, but allocated
        e[("ip.hours", "ip1", i)] = h
        e[("volume.gib_hours", "vol2", i)] = 5 * GIB * h
    for i in range(3):
        e[("vm.running_hours", "vm2", i)] = h
        e[("vm.vcpu_hours", "vm2", i)] = 4 * h
        e[("vm.memory_gib_hours", "vm2", i)] = 2 * GIB * h
        e[("vm.allocated_hours", "vm2", i)] = h
    # deleted: the last sample at 03:09 holds one scrape interval
    e[("vm.running_hours", "vm2", 3)] = Decimal(600)
    e[("vm.vcpu_hours", "vm2", 3)] = 4 * Decimal(600)
    e[("vm.memory_gib_hours", "vm2", 3)] = 2 * GIB * Decimal(600)
    e[("vm.allocated_hours", "vm2", 3)] = Decimal(600)
    e[("volume.gib_hours", "vol1", 0)] = 10 * GIB * h
    e[("volume.gib_hours", "vol1", 1)] = (10 * GIB * 1800) + (20 * GIB * 1800)
    for i in range(2, HOURS):
        e[("volume.gib_hours", "vol1", i)] = 20 * GIB * h
    # vol1's gap 04:50-05:09: the 04:49 sample holds one scrape interval, then 10 min
    # unbilled before 05:00 and 10 min after
    e[("volume.gib_hours", "vol1", 4)] = 20 * GIB * Decimal(3000)
    e[("volume.gib_hours", "vol1", 5)] = 20 * GIB * Decimal(3000)
    # nic1: kvm1's counter (first sample the baseline), then kvm2's from its own baseline;
    # the 03:49 -> 04:10 delta is not billed
    sent = {
        0: 59 * 1000,
        1: 60 * 1000,
        2: 31 * 1000 + 30 * 500,
        3: 50 * 500,
        4: 49 * 500,
        5: 60 * 500,
    }
    for i, v in sent.items():
        e[("network.bytes_sent", "nic1", i)] = Decimal(v)
    # nic2: reset at 01:30 counts 100 from zero; the 02:00 -> 02:20 delta is not billed
    received = {0: 59 * 2000, 1: 30 * 2000 + 100 + 29 * 2000, 2: 2000 + 39 * 2000, 3: 10 * 2000}
    for i, v in received.items():
        e[("network.bytes_received", "nic2", i)] = Decimal(v)
    return e


# records with coverage flags: nic2's hour 2 (the gap inside it), both hours around nic1's
# and vol1's gaps (each hour flagged with its own part); nothing else
FLAGGED = {
    ("network.bytes_received", "nic2", 2): Decimal(1200),
    ("network.bytes_sent", "nic1", 3): Decimal(660),
    ("network.bytes_sent", "nic1", 4): Decimal(600),
    ("volume.gib_hours", "vol1", 4): Decimal(600),
    ("volume.gib_hours", "vol1", 5): Decimal(600),
}
