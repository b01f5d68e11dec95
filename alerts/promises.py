"""What the cloud promises its customers, checked: no overcommit on production plans, the
replication and failure domains Ceph keeps, storage classes on the media they are sold on, MTU
1500 on the overlay with an underlay that carries it, and S3 that answers as S3.

The thresholds are configuration (``alerting.promises``, :class:`zcp.config.PromisesConfig`):
a production region keeps the defaults, the demo's one-node Ceph sets its own. The promtool
cases are made from the same values, so the built tests prove the rules as configured: each
alert fires one step after ``for:`` on series just past the bound and stays quiet on series
just inside it.

Sources: the libvirt exporter (vCPUs, memory and vCPU delay of the domains that really run) and
node_exporter (cores and memory) per ``host``; ``zcp_vm_info`` (service offering); the Ceph
exporter (``ceph_pool_size``, ``ceph_pool_min_size``, ``ceph_pool_crush_rule_info``,
``ceph_pool_pg_acting_hosts_min``, ``zcp_ceph_pool_info``); the mgr module's PG states; the
OVS exporter (``ovs_interface_mtu_bytes``, ``ovs_tunnel_underlay_mtu_bytes``); the blackbox
exporter's S3 probe (``probe_success{job="s3-probe"}``, see alerts/blackbox.py).
"""

from __future__ import annotations

from alerts.blackbox import JOB
from alerts.model import Alert, Case, Group, Recording, sel
from zcp.config import PromisesConfig
from zcp.promql import quote

S3_JOB = JOB

H = {"host": "kvm1", "zone": "zone1"}
LV = {"job": "libvirt", "instance": "kvm1:9177", **H}
NODE = {"job": "node", "instance": "kvm1:9100", **H}
INV = {"job": "zcp-inventory", "instance": "inv:9180"}
ZC = {"job": "zcp-ceph", "instance": "stor1:9284"}
POOL = {**ZC, "pool": "rbd-fast", "pool_id": "2"}
MGR = {"job": "ceph", "instance": "mgr:9283"}
OV = {"job": "ovs", "instance": "kvm1:9475", **H}
PORT = {**OV, "interface": "vnet0", "bridge": "br-int", "type": "", "vm_id": "vm-1"}
TUN = {**OV, "interface": "vx-kvm2", "bridge": "br-int", "remote_ip": "10.0.0.2"}
S3 = {"job": S3_JOB, "instance": "http://rgw.zone1:8080", "zone": "zone1"}
GIB = 1024**3


def _num(x: float) -> str:
    return f"{x:.6g}"


def media_expected(p: PromisesConfig) -> str:
    """One series per storage class, naming the device class it must live on."""
    return " or ".join(
        f'label_replace(label_replace(vector(1), "storage_class", {quote(cls)}, "", ""), '
        f'"device_class", {quote(dev)}, "", "")'
        for cls, dev in sorted(p.storage_media.items())
    )


def _production(p: PromisesConfig) -> str:
    return f"max by (vm_id) (zcp_vm_info{{service_offering=~{quote(p.production_offerings)}}})"


def _overcommit(p: PromisesConfig) -> tuple[Recording | Alert, ...]:
    prod = _production(p)
    cores = 4
    cpus = {
        sel("node_cpu_seconds_total", **NODE, cpu=str(c), mode="idle"): "0+60x30"
        for c in range(cores)
    }
    over_vcpus = int(cores * p.cpu_overcommit_max) + 1  # just past the bound
    within_vcpus = max(1, int(cores * p.cpu_overcommit_max))
    offering = "prod.medium"  # a production plan in every case (the regex is the operator's)

    def vms(total: int, per: str, unit: int) -> dict[str, str]:
        first = total // 2
        out = {}
        for n, amount in enumerate((first, total - first)):
            if amount <= 0:
                continue
            vm = {"vm_id": f"vm-{n}", "instance_name": f"i-2-{n}-VM"}
            out[sel(per, **LV, **vm)] = f"{amount * unit}x30"
            out[sel("zcp_vm_info", **INV, **vm, service_offering=offering)] = "1x30"
        return out

    mem_total = 16 * GIB
    over_mem = int(mem_total * p.memory_overcommit_max) + 2 * GIB
    within_mem = int(mem_total * p.memory_overcommit_max) - 2 * GIB
    return (
        Recording("host:vm_vcpus:sum", "sum by (host, zone) (libvirt_domain_vcpus)"),
        Recording(
            "host:node_cpus:count", 'count by (host, zone) (node_cpu_seconds_total{mode="idle"})'
        ),
        Recording(
            "host:vcpu_overcommit:ratio", "host:vm_vcpus:sum / on (host, zone) host:node_cpus:count"
        ),
        Recording(
            "host:vm_memory_bytes:sum", "sum by (host, zone) (libvirt_domain_memory_maximum_bytes)"
        ),
        Recording(
            "host:memory_overcommit:ratio",
            "host:vm_memory_bytes:sum / on (host, zone) "
            "sum by (host, zone) (node_memory_MemTotal_bytes)",
        ),
        Recording(
            "host:production_vms:count",
            f"count by (host, zone) (libvirt_domain_vcpus * on (vm_id) group_left () {prod})",
        ),
        Alert(
            "HostVCPUOvercommitted",
            f"host:vcpu_overcommit:ratio > {_num(p.cpu_overcommit_max)} "
            "and on (host, zone) host:production_vms:count > 0",
            "15m",
            "warning",
            "compute",
            "Hypervisor {{ $labels.host }} runs more vCPUs than it has cores",
            "The VMs running on {{ $labels.host }} (zone {{ $labels.zone }}) have more vCPUs than "
            f"{_num(p.cpu_overcommit_max)} per host core, and a production VM is among them: "
            "production plans promise dedicated vCPUs.",
            (
                Case({**cpus, **vms(over_vcpus, "libvirt_domain_vcpus", 1)}, ({**H},)),
                Case({**cpus, **vms(within_vcpus, "libvirt_domain_vcpus", 1)}),
            ),
        ),
        Alert(
            "HostMemoryOvercommitted",
            f"host:memory_overcommit:ratio > {_num(p.memory_overcommit_max)} "
            "and on (host, zone) host:production_vms:count > 0",
            "15m",
            "warning",
            "compute",
            "Hypervisor {{ $labels.host }} promises more memory than it has",
            "The VMs running on {{ $labels.host }} (zone {{ $labels.zone }}) were given more "
            f"memory than {_num(p.memory_overcommit_max)} times the host's, and a production VM "
            "is among them: production plans promise dedicated RAM.",
            (
                Case(
                    {
                        sel("node_memory_MemTotal_bytes", **NODE): f"{mem_total}x30",
                        **vms(1, "libvirt_domain_vcpus", 2),
                        **vms(over_mem, "libvirt_domain_memory_maximum_bytes", 1),
                    },
                    ({**H},),
                ),
                Case(
                    {
                        sel("node_memory_MemTotal_bytes", **NODE): f"{mem_total}x30",
                        **vms(1, "libvirt_domain_vcpus", 2),
                        **vms(within_mem, "libvirt_domain_memory_maximum_bytes", 1),
                    }
                ),
            ),
        ),
    )


def _steal(p: PromisesConfig) -> Alert:
    vm = {"vm_id": "vm-1", "instance_name": "i-2-10-VM"}
    run = 30.0  # seconds of vCPU time per minute: half a vCPU busy

    def delay(share: float) -> str:
        return f"0+{_num(run * share / (1 - share))}x30"

    def case(share: float, offering: str) -> dict[str, str]:
        return {
            sel("libvirt_domain_vcpu_time_seconds_total", **LV, **vm, vcpu="0"): f"0+{run:g}x30",
            sel("libvirt_domain_vcpu_delay_seconds_total", **LV, **vm, vcpu="0"): delay(share),
            sel("zcp_vm_info", **INV, **vm, service_offering=offering): "1x30",
        }

    over, within = (1 + p.steal_max) / 2, p.steal_max / 2
    by = "host, vm_id, instance_name"
    return Alert(
        "ProductionVMCPUStarved",
        f"sum by ({by}) (rate(libvirt_domain_vcpu_delay_seconds_total[5m])) "
        f"/ sum by ({by}) (rate(libvirt_domain_vcpu_time_seconds_total[5m]) "
        f"+ rate(libvirt_domain_vcpu_delay_seconds_total[5m])) > {_num(p.steal_max)} "
        # steal on an idle VM harms nobody: only VMs using a tenth of a vCPU or more
        f"and on ({by}) sum by ({by}) (rate(libvirt_domain_vcpu_time_seconds_total[5m])) > 0.1 "
        f"and on (vm_id) {_production(p)}",
        "15m",
        "warning",
        "compute",
        "Production VM {{ $labels.instance_name }} waits for CPU on {{ $labels.host }}",
        f"The vCPUs of production VM {{{{ $labels.vm_id }}}} ({{{{ $labels.instance_name }}}}) "
        f"spent over {_num(p.steal_max * 100)} % of their runnable time waiting for a host CPU "
        "for 15 minutes on {{ $labels.host }}: its dedicated vCPUs are not dedicated.",
        (
            Case(case(over, "prod.medium"), ({"host": "kvm1", **vm},), start=1),
            Case(case(within, "prod.medium"), start=1),
        ),
    )


def _replication(p: PromisesConfig) -> tuple[Recording | Alert, ...]:
    small = "|".join(["", *p.domains_too_small])
    ok_domain = p.ceph_failure_domain
    bad_domain = p.domains_too_small[-1] if p.domains_too_small else ""
    rule = {**POOL, "rule": "replicated_fast"}
    mgr_pool = {**MGR, "pool_id": "2"}
    heal = p.ceph_self_heal_minutes
    steps = heal + 10

    def pgs(undersized: int) -> dict[str, str]:
        return {
            sel("ceph_pool_metadata", **mgr_pool, name="rbd-fast"): f"1x{steps}",
            sel("ceph_pg_undersized", **mgr_pool): f"{undersized}x{steps}",
            sel("ceph_pg_degraded", **mgr_pool): f"{undersized}x{steps}",
        }

    cls, dev = sorted(p.storage_media.items())[0] if p.storage_media else ("fast", "nvme")
    wrong = next(d for d in ("hdd", "ssd", "nvme", "other") if d != dev)

    def placed(device_class: str) -> dict[str, str]:
        return {
            sel(
                "ceph_pool_crush_rule_info",
                **rule,
                failure_domain=ok_domain,
                device_class=device_class,
            ): "1x20",
            sel("zcp_ceph_pool_info", **POOL, storage_class=cls): "1x20",
        }

    def placed_labels(device_class: str) -> dict[str, str]:
        return {
            **rule,
            "failure_domain": ok_domain,
            "device_class": device_class,
            "storage_class": cls,
        }

    media: tuple[Recording | Alert, ...] = ()
    if p.storage_media:  # none configured: the media are not checked
        media = (
            Recording("zcp:storage_class_media:info", media_expected(p)),
            Alert(
                "CephStorageClassWrongMedia",
                "ceph_pool_crush_rule_info * on (pool) group_left (storage_class) "
                'max by (pool, storage_class) (zcp_ceph_pool_info{storage_class!=""}) '
                "unless on (storage_class, device_class) zcp:storage_class_media:info",
                "10m",
                "warning",
                "storage",
                "Storage class {{ $labels.storage_class }} can place data on the wrong media",
                "Pool {{ $labels.pool }} of storage class {{ $labels.storage_class }} is placed "
                "by CRUSH rule {{ $labels.rule }} on device class '{{ $labels.device_class }}' "
                "(empty: any OSD), not on the media this class is sold on.",
                (
                    Case(placed(wrong), (placed_labels(wrong),), note="wrong class"),
                    Case(placed(""), (placed_labels(""),), note="no device class"),
                    Case(placed(dev), note="the class's media"),
                ),
            ),
        )
    return (
        *media,
        Alert(
            "CephPoolReplicasBelowPromise",
            f"ceph_pool_size < {p.ceph_pool_size}",
            "5m",
            "critical",
            "storage",
            "Pool {{ $labels.pool }} keeps fewer replicas than promised",
            f"Ceph pool {{{{ $labels.pool }}}} keeps fewer than {p.ceph_pool_size} copies of its "
            "data: one failure less than promised loses data. Restore its size.",
            (
                Case({sel("ceph_pool_size", **POOL): f"{p.ceph_pool_size - 1}x10"}, ({**POOL},)),
                Case({sel("ceph_pool_size", **POOL): f"{p.ceph_pool_size}x10"}),
            ),
        ),
        Alert(
            "CephPoolMinSizeBelowPromise",
            f"ceph_pool_min_size < {p.ceph_pool_min_size}",
            "5m",
            "warning",
            "storage",
            "Pool {{ $labels.pool }} takes writes with too few copies",
            f"Ceph pool {{{{ $labels.pool }}}} accepts writes with fewer than "
            f"{p.ceph_pool_min_size} copies in place (min_size): a write acknowledged then can be "
            "lost with one more failure.",
            (
                Case(
                    {sel("ceph_pool_min_size", **POOL): f"{p.ceph_pool_min_size - 1}x10"},
                    ({**POOL},),
                ),
                Case({sel("ceph_pool_min_size", **POOL): f"{p.ceph_pool_min_size}x10"}),
            ),
        ),
        Alert(
            "CephPoolFailureDomainTooSmall",
            f"ceph_pool_crush_rule_info{{failure_domain=~{quote(small)}}}",
            "5m",
            "warning",
            "storage",
            "Pool {{ $labels.pool }} may keep its copies in one {{ $labels.failure_domain }}",
            "The CRUSH rule {{ $labels.rule }} of pool {{ $labels.pool }} separates copies only "
            f"by '{{{{ $labels.failure_domain }}}}', below the promised {ok_domain}: one "
            f"{ok_domain} failing can take every copy.",
            (
                Case(
                    {
                        sel(
                            "ceph_pool_crush_rule_info",
                            **rule,
                            failure_domain=bad_domain,
                            device_class=dev,
                        ): "1x10"
                    },
                    ({**rule, "failure_domain": bad_domain, "device_class": dev},),
                ),
                Case(
                    {
                        sel(
                            "ceph_pool_crush_rule_info",
                            **rule,
                            failure_domain=ok_domain,
                            device_class=dev,
                        ): "1x10"
                    }
                ),
            ),
        ),
        Alert(
            "CephPGsOnTooFewHosts",
            f"ceph_pool_pg_acting_hosts_min < {p.ceph_min_hosts}",
            "15m",
            "warning",
            "storage",
            "Pool {{ $labels.pool }} has placement groups on too few hosts",
            "Some placement group of pool {{ $labels.pool }} keeps all its copies on fewer than "
            f"{p.ceph_min_hosts} hosts: one server failing can take every copy.",
            (
                Case(
                    {sel("ceph_pool_pg_acting_hosts_min", **POOL): f"{p.ceph_min_hosts - 1}x20"},
                    ({**POOL},),
                ),
                Case({sel("ceph_pool_pg_acting_hosts_min", **POOL): f"{p.ceph_min_hosts}x20"}),
            ),
        ),
        Alert(
            "CephPGsNotSelfHealed",
            "ceph_pool_metadata * on (pool_id, instance) group_left () "
            '(max by (pool_id, instance) ({__name__=~"ceph_pg_undersized|ceph_pg_degraded"}) > 0)',
            f"{heal}m",
            "critical",
            "storage",
            "Pool {{ $labels.name }} has not healed",
            "Placement groups of pool {{ $labels.name }} have been undersized or degraded for "
            f"{heal} minutes, longer than Ceph's self-heal should take: data has fewer copies "
            "than promised and Ceph is not restoring them (no room in the failure domain, OSDs "
            "out, recovery stuck).",
            (
                Case(pgs(3), ({**mgr_pool, "name": "rbd-fast"},)),
                Case(pgs(0)),
            ),
        ),
    )


def _overlay(p: PromisesConfig) -> tuple[Alert, ...]:
    need = p.overlay_mtu + p.tunnel_overhead
    jumbo = 9000 if p.overlay_mtu != 9000 else 1500
    return (
        Alert(
            "OverlayPortMTUWrong",
            f'ovs_interface_mtu_bytes{{vm_id!=""}} != {p.overlay_mtu}',
            "5m",
            "warning",
            "network",
            "VM port {{ $labels.interface }} on {{ $labels.host }} has the wrong MTU",
            "OVS port {{ $labels.interface }} of VM {{ $labels.vm_id }} on {{ $labels.host }} "
            f"does not have the overlay's MTU {p.overlay_mtu}: the guest's packets are dropped "
            "or fragmented.",
            (
                Case({sel("ovs_interface_mtu_bytes", **PORT): f"{jumbo}x10"}, ({**PORT},)),
                Case({sel("ovs_interface_mtu_bytes", **PORT): f"{p.overlay_mtu}x10"}),
            ),
        ),
        Alert(
            "TunnelUnderlayMTUTooSmall",
            f"ovs_tunnel_underlay_mtu_bytes < {need}",
            "5m",
            "critical",
            "network",
            "The underlay of tunnel {{ $labels.interface }} on {{ $labels.host }} is too small",
            "Tunnel {{ $labels.interface }} to {{ $labels.remote_ip }} leaves {{ $labels.host }} "
            f"through {{{{ $labels.underlay }}}}, whose MTU is below {need} ({p.overlay_mtu} + "
            f"{p.tunnel_overhead} of encapsulation): full-size tenant packets are dropped "
            "(TCP stalls) or fragmented.",
            (
                Case(
                    {
                        sel(
                            "ovs_tunnel_underlay_mtu_bytes", **TUN, underlay="eth1"
                        ): f"{need - 1}x10"
                    },
                    ({**TUN, "underlay": "eth1"},),
                ),
                Case({sel("ovs_tunnel_underlay_mtu_bytes", **TUN, underlay="eth1"): f"{need}x10"}),
            ),
        ),
    )


def _underlay_unknown() -> Alert:
    return Alert(
        "TunnelUnderlayUnknown",
        "ovs_tunnel_underlay_unresolved > 0",
        "15m",
        "warning",
        "network",
        "Tunnels on {{ $labels.host }} have no known underlay ({{ $labels.reason }})",
        "The OVS exporter on {{ $labels.host }} cannot tell which interface carries some "
        "tunnels ({{ $labels.reason }}: no_route, OVS has no route to the remote; no_mtu, the "
        "device is outside OVS and the exporter's /sys): their underlay MTU is not checked, "
        "and without a route their traffic does not flow.",
        (
            Case(
                {sel("ovs_tunnel_underlay_unresolved", **OV, reason="no_route"): "2x20"},
                ({**OV, "reason": "no_route"},),
            ),
            Case({sel("ovs_tunnel_underlay_unresolved", **OV, reason="no_route"): "0x20"}),
        ),
    )


def _s3() -> Alert:
    return Alert(
        "S3EndpointDown",
        f'probe_success{{job="{S3_JOB}"}} == 0',
        "2m",
        "critical",
        "storage",
        "Object storage in {{ $labels.zone }} does not answer as S3",
        "The S3 probe of {{ $labels.instance }} (zone {{ $labels.zone }}) has failed for 2 "
        "minutes: S3 tools cannot list buckets there (radosgw down, unreachable, or answering "
        "something that is not S3).",
        (
            Case({sel("probe_success", **S3): "0x10"}, ({**S3},)),
            Case({sel("probe_success", **S3): "1x10"}),
        ),
    )


def promise_groups(p: PromisesConfig) -> list[Group]:
    """The rule groups that check the promises, as ``p`` configures them."""
    return [
        Group("promises-compute", (*_overcommit(p), _steal(p))),
        Group("promises-storage", (*_replication(p), _s3())),
        Group("promises-network", (*_overlay(p), _underlay_unknown())),
    ]
