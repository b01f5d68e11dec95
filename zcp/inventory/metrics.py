"""Info metrics that carry CloudStack identity: ``zcp_vm_info``, ``zcp_volume_info``, ...

Tenancy lives in these info series (value 1), not on every counter; Prometheus joins them in
recording rules. Exporters build them from the cached inventory, never by calling CloudStack.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from zcp.inventory.cache import InventoryCache
from zcp.inventory.model import VM, Inventory, Volume

VM_INFO_LABELS = [
    "vm_id",
    "instance_name",
    "vm_name",
    "account_id",
    "account",
    "domain_id",
    "domain_path",
    "project_id",
    "project",
    "zone",
    "host",
    "service_offering",
    "vcpus",
    "memory_bytes",
]


def vm_info_labels(inv: Inventory, vm: VM) -> list[str]:
    """Label values of ``zcp_vm_info`` for a VM the inventory knows."""
    tenant = inv.tenant_by_id.get(vm.account_id)
    return [
        vm.id,
        vm.instance_name,
        vm.name,
        vm.account_id,
        tenant.name if tenant else "",
        tenant.domain_id if tenant else "",
        tenant.domain_path if tenant else "",
        vm.project_id,
        inv.project_name(vm.account_id, vm.project_id),
        vm.zone,
        vm.host,
        vm.service_offering,
        str(vm.vcpus),
        str(vm.memory_bytes),
    ]


def volume_info_metric(volumes: Iterable[Volume]) -> GaugeMetricFamily:
    """``zcp_volume_info`` for ``volumes``."""
    vol_info = GaugeMetricFamily(
        "zcp_volume_info",
        "CloudStack identity of a volume (value 1).",
        labels=[
            "volume_id",
            "volume_name",
            "vm_id",
            "account_id",
            "project_id",
            "type",
            "pool",
            "storage_class",
            "rbd_image",
        ],
    )
    for vol in volumes:
        vol_info.add_metric(
            [
                vol.id,
                vol.name,
                vol.vm_id,
                vol.account_id,
                vol.project_id,
                vol.type,
                vol.pool,
                vol.storage_class or "",
                vol.rbd_image,
            ],
            1,
        )
    return vol_info


def inventory_info_metrics(inv: Inventory, vm_ids: Iterable[str] | None = None) -> Iterator[Metric]:
    """Info families for all VMs (or just ``vm_ids``) and their volumes and NICs."""
    wanted = None if vm_ids is None else set(vm_ids)
    vms = [v for v in inv.vms if wanted is None or v.id in wanted]
    keep = {v.id for v in vms}

    vm_info = GaugeMetricFamily(
        "zcp_vm_info", "CloudStack identity of a VM (value 1).", labels=VM_INFO_LABELS
    )
    for vm in vms:
        vm_info.add_metric(vm_info_labels(inv, vm), 1)
    yield vm_info

    yield volume_info_metric(
        inv.volumes
        if wanted is None
        else [vol for vm_id in keep for vol in inv.volumes_by_vm.get(vm_id, ())]
    )

    nic_info = GaugeMetricFamily(
        "zcp_nic_info",
        "CloudStack identity of a vNIC (value 1).",
        labels=["nic_id", "mac", "vm_id", "account_id", "network_id", "network_name", "ip"],
    )
    for vm_id in keep:
        owner = inv.vm_by_id[vm_id].account_id
        for nic in inv.nics_by_vm.get(vm_id, ()):
            nic_info.add_metric(
                [nic.id, nic.mac, nic.vm_id, owner, nic.network_id, nic.network_name, nic.ip], 1
            )
    yield nic_info


def tenant_info_metrics(inv: Inventory) -> Iterator[Metric]:
    """``zcp_tenant_info`` for every CloudStack account."""
    info = GaugeMetricFamily(
        "zcp_tenant_info",
        "A CloudStack account (tenant) (value 1).",
        labels=["account_id", "account", "domain_id", "domain_path", "state"],
    )
    for t in inv.tenants:
        info.add_metric([t.account_id, t.name, t.domain_id, t.domain_path, t.state], 1)
    yield info


def fleet_metrics(inv: Inventory) -> Iterator[Metric]:
    """What only the whole inventory can say: the state CloudStack expects each VM in (for
    "should run but does not" alerts), the storage class of each primary storage pool, and
    the public IP addresses allocated to accounts."""
    state = GaugeMetricFamily(
        "zcp_vm_state",
        "State of a VM in CloudStack (value 1; label state, e.g. Running).",
        labels=["vm_id", "instance_name", "account_id", "account", "host", "zone", "state"],
    )
    for vm in inv.vms:
        tenant = inv.tenant_by_id.get(vm.account_id)
        state.add_metric(
            [
                vm.id,
                vm.instance_name,
                vm.account_id,
                tenant.name if tenant else "",
                vm.host,
                vm.zone,
                vm.state,
            ],
            1,
        )
    yield state
    pools = GaugeMetricFamily(
        "zcp_storage_pool_info",
        "A CloudStack primary storage pool, its Ceph pool and storage class (value 1).",
        labels=["pool_id", "pool", "ceph_pool", "storage_class", "zone"],
    )
    for sp in inv.storage_pools:
        pools.add_metric([sp.id, sp.name, sp.path, sp.storage_class or "", sp.zone], 1)
    yield pools
    ips = GaugeMetricFamily(
        "zcp_public_ip_info",
        "A public IP address allocated to an account (value 1; the metering of IP_ADDRESS hours).",
        labels=[
            "ip_id",
            "address",
            "account_id",
            "project_id",
            "zone",
            "vm_id",
            "source_nat",
            "state",
        ],
    )
    for ip in inv.public_ips:
        ips.add_metric(
            [
                ip.id,
                ip.address,
                ip.account_id,
                ip.project_id,
                ip.zone,
                ip.vm_id,
                str(ip.source_nat).lower(),
                ip.state,
            ],
            1,
        )
    yield ips


class InventoryCollector:
    """Collector: identity info of the whole cached inventory plus the cache's own health."""

    def __init__(self, cache: InventoryCache) -> None:
        self.cache = cache

    def collect(self) -> Iterator[Metric]:
        """Families built afresh from the current copy; never waits on the source."""
        inv = self.cache.current()
        yield from tenant_info_metrics(inv)
        yield from inventory_info_metrics(inv)
        yield from fleet_metrics(inv)
        yield from self.cache.collect()
