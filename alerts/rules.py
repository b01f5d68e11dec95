"""The operator Prometheus's recording and alerting rules.

Conventions the rules rely on (the scrape config sets them):
* every target on a hypervisor carries ``host`` (its CloudStack host name) and ``zone``;
* jobs: ``node`` (node_exporter), ``libvirt``, ``ovs``, ``ceph`` (mgr module), ``zcp-ceph``
  (our Ceph exporter), ``zcp-inventory``, ``tenant-prometheus`` (label ``tenant``),
  ``pushgateway`` (metering job), ``prometheus``, ``alertmanager``.
Descriptions use only ``{{ $labels.x }}`` so that tests can check them exactly.
"""

from __future__ import annotations

from alerts.ceph import ceph_alerts
from alerts.model import Alert, Case, Group, Recording, sel
from alerts.promises import promise_groups
from zcp.config import PromisesConfig

H = {"job": "node", "instance": "kvm1:9100", "host": "kvm1", "zone": "zone1"}


# -- tenant recording rules (federated by the tenant stacks: only {tenant="<id>"}) -------------
OWNER = (
    'label_replace(max by (vm_id, account_id) (zcp_vm_info{account_id!=""}), '
    '"tenant", "$1", "account_id", "(.+)")'
)
JOIN = "* on (vm_id) group_left (tenant) tenant:vm:owner"

TENANT = Group(
    "tenant",
    (
        Recording("tenant:vm:owner", OWNER),
        Recording(
            "tenant:zcp_vm_info:max",
            # from the inventory service and from the libvirt exporters, whose targets' host
            # and zone push the VM's own to exported_*: the VM's own back, one series a VM
            "max without (instance, job, exported_host, exported_zone) (label_replace("
            'label_replace(label_replace(zcp_vm_info{account_id!=""}, "tenant", "$1", '
            '"account_id", "(.+)"), "host", "$1", "exported_host", "(.+)"), "zone", "$1", '
            '"exported_zone", "(.+)"))',
        ),
        Recording(
            "tenant:libvirt_domain_cpu_time_seconds:rate5m",
            f"sum by (tenant, vm_id) (rate(libvirt_domain_cpu_time_seconds_total[5m]) {JOIN})",
        ),
        Recording(
            "tenant:libvirt_domain_vcpu_delay_seconds:rate5m",
            f"sum by (tenant, vm_id) (rate(libvirt_domain_vcpu_delay_seconds_total[5m]) {JOIN})",
        ),
        Recording(
            "tenant:libvirt_domain_memory_balloon_bytes:max",
            f"max by (tenant, vm_id) (libvirt_domain_memory_balloon_bytes {JOIN})",
        ),
        *[
            Recording(
                f"tenant:libvirt_domain_block_{d}_bytes:rate5m",
                f"sum by (tenant, vm_id, device, volume_id) "
                f"(rate(libvirt_domain_block_{d}_bytes_total[5m]) {JOIN})",
            )
            for d in ("read", "write")
        ],
        *[
            Recording(
                f"tenant:libvirt_domain_block_{d}_requests:rate5m",
                f"sum by (tenant, vm_id, device, volume_id) "
                f"(rate(libvirt_domain_block_{d}_requests_total[5m]) {JOIN})",
            )
            for d in ("read", "write")
        ],
        # storage a tenant holds, by storage class (RBD through the volume's owner, RGW by uid)
        Recording(
            "tenant:ceph_rbd_image_used_bytes:sum",
            "sum by (tenant, storage_class) (ceph_rbd_image_used_bytes * on (volume_id) "
            "group_left (tenant) label_replace(max by (volume_id, account_id) "
            '(zcp_volume_info{account_id!=""}), "tenant", "$1", "account_id", "(.+)"))',
        ),
        Recording(
            "tenant:ceph_rbd_image_provisioned_bytes:sum",
            "sum by (tenant, storage_class) (ceph_rbd_image_provisioned_bytes * on (volume_id) "
            "group_left (tenant) label_replace(max by (volume_id, account_id) "
            '(zcp_volume_info{account_id!=""}), "tenant", "$1", "account_id", "(.+)"))',
        ),
        Recording(
            "tenant:ceph_rgw_user_stored_bytes:sum",
            'sum by (tenant) (label_replace(ceph_rgw_user_stored_bytes{account_id!=""}, '
            '"tenant", "$1", "account_id", "(.+)"))',
        ),
        *[
            Recording(
                f"tenant:libvirt_domain_interface_{d}_bytes:rate5m",
                f"sum by (tenant, vm_id, device, mac) "
                f"(rate(libvirt_domain_interface_{d}_bytes_total[5m]) {JOIN})",
            )
            for d in ("receive", "transmit")
        ],
        # what the tenant dashboards need per VM, volume and bucket
        *[
            Recording(
                f"tenant:libvirt_domain_{m}:max",
                f"max by (tenant, vm_id) (libvirt_domain_{m} {JOIN})",
            )
            for m in ("state", "vcpus", "memory_maximum_bytes", "memory_rss_bytes")
        ],
        *[
            Recording(
                f"tenant:libvirt_domain_interface_{what}:rate5m",
                f"sum by (tenant, vm_id, device, mac) "
                f"(rate(libvirt_domain_interface_receive_{what}_total[5m]) {JOIN}) + "
                f"sum by (tenant, vm_id, device, mac) "
                f"(rate(libvirt_domain_interface_transmit_{what}_total[5m]) {JOIN})",
            )
            for what in ("errors", "drops")
        ],
        *[
            Recording(
                f"tenant:ceph_rbd_image_{m}_bytes:volume",
                f"max by (tenant, volume_id, storage_class) (ceph_rbd_image_{m}_bytes "
                "* on (volume_id) group_left (tenant) label_replace(max by (volume_id, "
                'account_id) (zcp_volume_info{account_id!=""}), "tenant", "$1", "account_id", '
                '"(.+)"))',
            )
            for m in ("provisioned", "used")
        ],
        Recording(
            "tenant:zcp_volume_info:max",
            'max without (instance, job) (label_replace(zcp_volume_info{job="zcp-inventory",'
            'account_id!=""}, "tenant", "$1", "account_id", "(.+)"))',
        ),
        *[
            Recording(
                f"tenant:ceph_rgw_bucket_{m}:max",
                f'max by (tenant, bucket) (label_replace(ceph_rgw_bucket_{m}{{account_id!=""}}, '
                '"tenant", "$1", "account_id", "(.+)"))',
            )
            for m in ("stored_bytes", "objects")
        ],
        Recording(
            "tenant:zcp_metering_usage:max",
            "max by (tenant, meter, unit, month) (label_replace(zcp_metering_usage{"
            'account_id!=""}, "tenant", "$1", "account_id", "(.+)"))',
        ),
        Recording(
            "tenant:zcp_metering_charges:max",
            "max by (tenant, currency, month) (label_replace(zcp_metering_charges{"
            'account_id!=""}, "tenant", "$1", "account_id", "(.+)"))',
        ),
    ),
)

# -- compute: hypervisors, the libvirt exporter, VMs ---------------------------------------------
LV = {"job": "libvirt", "instance": "kvm1:9177", "host": "kvm1", "zone": "zone1"}
VM = {"vm_id": "vm-1", "instance_name": "i-2-10-VM"}
INV = {"job": "zcp-inventory", "instance": "inv:9180"}
# guard against a blind spot: no libvirt series because the exporter or libvirtd is down
BLIND = 'unless on (host) (up{job="libvirt"} == 0 or libvirt_up == 0)'

COMPUTE = Group(
    "compute",
    (
        Alert(
            "HypervisorHostDown",
            'up{job="node"} == 0',
            "2m",
            "critical",
            "compute",
            "Hypervisor {{ $labels.host }} is unreachable",
            "node_exporter on hypervisor {{ $labels.host }} ({{ $labels.instance }}, zone "
            "{{ $labels.zone }}) has not answered scrapes for 2 minutes: the host may be down "
            "and its VMs with it.",
            (
                Case({sel("up", **H): "0x10"}, ({**H},), note="node_exporter down"),
                Case({sel("up", **H): "1x10"}, note="up"),
            ),
        ),
        Alert(
            "LibvirtExporterDown",
            'up{job="libvirt"} == 0',
            "2m",
            "critical",
            "compute",
            "libvirt exporter on {{ $labels.host }} is down",
            "The libvirt exporter on {{ $labels.host }} ({{ $labels.instance }}) has not "
            "answered scrapes for 2 minutes: no VM metrics from this host (VM alerts of this host "
            "are held back).",
            (Case({sel("up", **LV): "0x10"}, ({**LV},)), Case({sel("up", **LV): "1x10"})),
        ),
        Alert(
            "ScrapeTargetDown",
            'up{job!~"node|libvirt|tenant-prometheus|ceph"} == 0',
            "5m",
            "warning",
            "platform",
            "Scrape target {{ $labels.job }}/{{ $labels.instance }} is down",
            "Prometheus cannot scrape {{ $labels.instance }} of job {{ $labels.job }} "
            "(host {{ $labels.host }}).",
            (
                Case(
                    {sel("up", job="ovs", instance="kvm1:9475", host="kvm1"): "0x10"},
                    ({"job": "ovs", "instance": "kvm1:9475", "host": "kvm1"},),
                ),
                Case(
                    {sel("up", job="node", instance="kvm1:9100", host="kvm1"): "0x10"},
                    note="node has its own alert",
                ),
            ),
        ),
        Alert(
            "LibvirtUnhealthy",
            "libvirt_up == 0",
            "3m",
            "critical",
            "compute",
            "libvirtd on {{ $labels.host }} does not answer",
            "The libvirt exporter on {{ $labels.host }} gets no answer from libvirtd within its "
            "deadline (hung or stopped libvirtd): VMs cannot be managed on this host.",
            (
                Case({sel("libvirt_up", **LV): "0x10"}, ({**LV},)),
                Case({sel("libvirt_up", **LV): "1x10"}),
            ),
        ),
        Alert(
            "LibvirtStatsIncomplete",
            "libvirt_exporter_domains_timed_out > 0",
            "15m",
            "warning",
            "compute",
            "libvirt skips stats of busy domains on {{ $labels.host }}",
            "For 15 minutes some running domains on {{ $labels.host }} returned incomplete stats "
            "(busy QEMU monitor): check for stuck block jobs or migrations.",
            (
                Case({sel("libvirt_exporter_domains_timed_out", **LV): "2x20"}, ({**LV},)),
                Case({sel("libvirt_exporter_domains_timed_out", **LV): "0x20"}),
            ),
        ),
        Alert(
            "VMDownUnexpectedly",
            # present and alive (running, blocked, paused, suspended) on some hypervisor; a
            # paused VM has its own alert
            'zcp_vm_state{state="Running"} unless on (vm_id) (libvirt_domain_state == 1 or '
            "libvirt_domain_state == 2 or libvirt_domain_state == 3 or libvirt_domain_state == 7) "
            f"{BLIND}",
            "2m",
            "critical",
            "compute",
            "VM {{ $labels.instance_name }} is not running on any hypervisor",
            "CloudStack says VM {{ $labels.vm_id }} ({{ $labels.instance_name }}, account "
            "{{ $labels.account }}) runs on {{ $labels.host }}, but no hypervisor has it running: "
            "it crashed, was shut off or destroyed outside CloudStack, or its host lost it.",
            (
                Case(
                    {
                        sel(
                            "zcp_vm_state",
                            **INV,
                            **VM,
                            account="acme",
                            host="kvm1",
                            state="Running",
                        ): "1x10",
                        sel("libvirt_domain_state", **LV, **VM): "5x10",
                    },
                    ({**INV, **VM, "account": "acme", "host": "kvm1", "state": "Running"},),
                    note="shut off on its host",
                ),
                Case(
                    {
                        sel(
                            "zcp_vm_state",
                            **INV,
                            **VM,
                            account="acme",
                            host="kvm1",
                            state="Running",
                        ): "1x10",
                        sel("libvirt_domain_state", **LV, **VM): "3x10",
                    },
                    note="paused: VMPausedUnexpectedly's job",
                ),
                Case(
                    {
                        sel(
                            "zcp_vm_state",
                            **INV,
                            **VM,
                            account="acme",
                            host="kvm1",
                            state="Running",
                        ): "1x10",
                        sel("libvirt_domain_state", **LV, **VM): "1x10",
                    },
                    note="running",
                ),
                Case(
                    {
                        sel(
                            "zcp_vm_state",
                            **INV,
                            **VM,
                            account="acme",
                            host="kvm1",
                            state="Running",
                        ): "1x10",
                        sel("up", **LV): "0x10",
                    },
                    note="blind: the exporter is down",
                ),
                Case(
                    {
                        sel(
                            "zcp_vm_state",
                            **INV,
                            **VM,
                            account="acme",
                            host="kvm1",
                            state="Stopped",
                        ): "1x10"
                    },
                    note="stopped in CloudStack",
                ),
            ),
        ),
        Alert(
            "VMCrashed",
            "libvirt_domain_state == 6",
            "1m",
            "critical",
            "compute",
            "VM {{ $labels.instance_name }} crashed on {{ $labels.host }}",
            "Domain {{ $labels.vm_id }} ({{ $labels.instance_name }}) on {{ $labels.host }} is in "
            "the crashed state.",
            (
                Case({sel("libvirt_domain_state", **LV, **VM): "6x5"}, ({**LV, **VM},)),
                Case({sel("libvirt_domain_state", **LV, **VM): "1x5"}),
            ),
        ),
        Alert(
            "VMPausedUnexpectedly",
            "(libvirt_domain_state == 3) and on (vm_id, instance) (libvirt_domain_state_reason == 0 "
            "or libvirt_domain_state_reason == 5 or libvirt_domain_state_reason == 6 "
            "or libvirt_domain_state_reason == 10 or libvirt_domain_state_reason == 13)",
            "5m",
            "warning",
            "compute",
            "VM {{ $labels.instance_name }} is paused on {{ $labels.host }}",
            "Domain {{ $labels.vm_id }} ({{ $labels.instance_name }}) on {{ $labels.host }} was "
            "paused by an I/O error, a watchdog, a crash or a failed migration, not by a user.",
            (
                Case(
                    {
                        sel("libvirt_domain_state", **LV, **VM): "3x10",
                        sel("libvirt_domain_state_reason", **LV, **VM): "5x10",
                    },
                    ({**LV, **VM},),
                    note="paused on an I/O error",
                ),
                Case(
                    {
                        sel("libvirt_domain_state", **LV, **VM): "3x10",
                        sel("libvirt_domain_state_reason", **LV, **VM): "1x10",
                    },
                    note="paused by a user",
                ),
            ),
        ),
        Alert(
            "VMCPUStealHigh",
            "sum by (host, vm_id, instance_name) (rate(libvirt_domain_vcpu_delay_seconds_total[5m])) "
            "/ sum by (host, vm_id, instance_name) (rate(libvirt_domain_vcpu_time_seconds_total[5m])"
            " + rate(libvirt_domain_vcpu_delay_seconds_total[5m])) > 0.2 "
            # steal on an idle VM harms nobody: only VMs using a tenth of a vCPU or more
            "and on (host, vm_id, instance_name) sum by (host, vm_id, instance_name) "
            "(rate(libvirt_domain_vcpu_time_seconds_total[5m])) > 0.1",
            "15m",
            "warning",
            "compute",
            "VM {{ $labels.instance_name }} waits for CPU on {{ $labels.host }}",
            "The vCPUs of {{ $labels.vm_id }} ({{ $labels.instance_name }}) spent over 20 % of "
            "their runnable time waiting for a host CPU (steal) for 15 minutes: "
            "{{ $labels.host }} is overcommitted.",
            (
                Case(
                    {
                        sel(
                            "libvirt_domain_vcpu_delay_seconds_total", **LV, **VM, vcpu="0"
                        ): "0+30x30",
                        sel(
                            "libvirt_domain_vcpu_time_seconds_total", **LV, **VM, vcpu="0"
                        ): "0+30x30",
                    },
                    ({"host": "kvm1", **VM},),
                    start=1,
                    note="50 % steal",
                ),
                Case(
                    {
                        sel(
                            "libvirt_domain_vcpu_delay_seconds_total", **LV, **VM, vcpu="0"
                        ): "0+1x30",
                        sel(
                            "libvirt_domain_vcpu_time_seconds_total", **LV, **VM, vcpu="0"
                        ): "0+30x30",
                    },
                    start=1,
                    note="3 % steal",
                ),
                Case(
                    {
                        sel(
                            "libvirt_domain_vcpu_delay_seconds_total", **LV, **VM, vcpu="0"
                        ): "0+3x30",
                        sel(
                            "libvirt_domain_vcpu_time_seconds_total", **LV, **VM, vcpu="0"
                        ): "0+3x30",
                    },
                    start=1,
                    note="50 % steal of an idle VM (5 % of a vCPU)",
                ),
            ),
        ),
        Alert(
            "VMDiskLatencyHigh",
            "(rate(libvirt_domain_block_read_time_seconds_total[5m]) "
            "+ rate(libvirt_domain_block_write_time_seconds_total[5m])) "
            "/ (rate(libvirt_domain_block_read_requests_total[5m]) "
            "+ rate(libvirt_domain_block_write_requests_total[5m]) > 1) > 0.1",
            "10m",
            "warning",
            "compute",
            "Disk {{ $labels.device }} of VM {{ $labels.instance_name }} is slow",
            "Requests on {{ $labels.device }} (volume {{ $labels.volume_id }}) of "
            "{{ $labels.vm_id }} on {{ $labels.host }} took over 100 ms on average for 10 "
            "minutes: check the Ceph pool behind it.",
            (
                Case(
                    {
                        sel(
                            "libvirt_domain_block_write_time_seconds_total",
                            **LV,
                            **VM,
                            device="vda",
                            volume_id="vol-1",
                        ): "0+60x20",
                        sel(
                            "libvirt_domain_block_write_requests_total",
                            **LV,
                            **VM,
                            device="vda",
                            volume_id="vol-1",
                        ): "0+300x20",
                        sel(
                            "libvirt_domain_block_read_time_seconds_total",
                            **LV,
                            **VM,
                            device="vda",
                            volume_id="vol-1",
                        ): "0x20",
                        sel(
                            "libvirt_domain_block_read_requests_total",
                            **LV,
                            **VM,
                            device="vda",
                            volume_id="vol-1",
                        ): "0x20",
                    },
                    ({**LV, **VM, "device": "vda", "volume_id": "vol-1"},),
                    start=1,
                    note="200 ms per request",
                ),
                Case(
                    {
                        sel(
                            "libvirt_domain_block_write_time_seconds_total",
                            **LV,
                            **VM,
                            device="vda",
                            volume_id="vol-1",
                        ): "0+3x20",
                        sel(
                            "libvirt_domain_block_write_requests_total",
                            **LV,
                            **VM,
                            device="vda",
                            volume_id="vol-1",
                        ): "0+300x20",
                        sel(
                            "libvirt_domain_block_read_time_seconds_total",
                            **LV,
                            **VM,
                            device="vda",
                            volume_id="vol-1",
                        ): "0x20",
                        sel(
                            "libvirt_domain_block_read_requests_total",
                            **LV,
                            **VM,
                            device="vda",
                            volume_id="vol-1",
                        ): "0x20",
                    },
                    start=1,
                    note="10 ms per request",
                ),
            ),
        ),
        Alert(
            "VMUnknownToCloudStack",
            # CloudStack's own system VMs and routers (r-/s-/v-<id>-VM) are not in the inventory
            'libvirt_domain_state{instance_name!~"[rsv]-[0-9]+-VM"} == 1 '
            'and on (vm_id) zcp_vm_info{account_id=""}',
            "30m",
            "info",
            "compute",
            "A VM CloudStack does not know runs on {{ $labels.host }}",
            "Domain {{ $labels.vm_id }} ({{ $labels.instance_name }}) runs on {{ $labels.host }} "
            "but is in no CloudStack account: a leftover of a failed operation or a VM started "
            "by hand. It uses capacity nobody is billed for.",
            (
                Case(
                    {
                        sel("libvirt_domain_state", **LV, **VM): "1x40",
                        sel("zcp_vm_info", **LV, **VM, account_id=""): "1x40",
                    },
                    ({**LV, **VM},),
                ),
                Case(
                    {
                        sel("libvirt_domain_state", **LV, **VM): "1x40",
                        sel("zcp_vm_info", **LV, **VM, account_id="acct-1"): "1x40",
                    }
                ),
                Case(
                    {
                        sel(
                            "libvirt_domain_state", **LV, vm_id="r1", instance_name="r-7-VM"
                        ): "1x40",
                        sel(
                            "zcp_vm_info", **LV, vm_id="r1", instance_name="r-7-VM", account_id=""
                        ): "1x40",
                    },
                    note="a virtual router",
                ),
            ),
        ),
        Alert(
            "HostCPUSaturated",
            '1 - avg without (cpu, mode) (rate(node_cpu_seconds_total{mode="idle"}[5m])) > 0.95',
            "15m",
            "warning",
            "compute",
            "Hypervisor {{ $labels.host }} CPUs are saturated",
            "CPUs of {{ $labels.host }} were over 95 % busy for 15 minutes: VMs there get steal.",
            (
                Case(
                    {sel("node_cpu_seconds_total", **H, cpu="0", mode="idle"): "0+1x30"},
                    ({**H},),
                    start=1,
                    note="idle 1.7 %",
                ),
                Case(
                    {sel("node_cpu_seconds_total", **H, cpu="0", mode="idle"): "0+50x30"},
                    start=1,
                    note="idle 83 %",
                ),
            ),
        ),
        Alert(
            "HostMemoryLow",
            "node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes < 0.05",
            "10m",
            "critical",
            "compute",
            "Hypervisor {{ $labels.host }} is running out of memory",
            "Less than 5 % of the memory of {{ $labels.host }} is available: the OOM killer may "
            "kill a VM's QEMU.",
            (
                Case(
                    {
                        sel("node_memory_MemAvailable_bytes", **H): "4x20",
                        sel("node_memory_MemTotal_bytes", **H): "100x20",
                    },
                    ({**H},),
                ),
                Case(
                    {
                        sel("node_memory_MemAvailable_bytes", **H): "40x20",
                        sel("node_memory_MemTotal_bytes", **H): "100x20",
                    }
                ),
            ),
        ),
        Alert(
            "HostDiskFull",
            'node_filesystem_avail_bytes{fstype!~"tmpfs|overlay|squashfs"} '
            "/ node_filesystem_size_bytes < 0.10 and node_filesystem_readonly == 0",
            "15m",
            "warning",
            "compute",
            "Filesystem {{ $labels.mountpoint }} on {{ $labels.host }} is almost full",
            "Less than 10 % space is left on {{ $labels.mountpoint }} ({{ $labels.device }}) of "
            "{{ $labels.host }}.",
            (
                Case(
                    {
                        sel(
                            "node_filesystem_avail_bytes",
                            **H,
                            device="/dev/sda1",
                            fstype="ext4",
                            mountpoint="/",
                        ): "5x20",
                        sel(
                            "node_filesystem_size_bytes",
                            **H,
                            device="/dev/sda1",
                            fstype="ext4",
                            mountpoint="/",
                        ): "100x20",
                        sel(
                            "node_filesystem_readonly",
                            **H,
                            device="/dev/sda1",
                            fstype="ext4",
                            mountpoint="/",
                        ): "0x20",
                    },
                    ({**H, "device": "/dev/sda1", "fstype": "ext4", "mountpoint": "/"},),
                ),
                Case(
                    {
                        sel(
                            "node_filesystem_avail_bytes",
                            **H,
                            device="/dev/sda1",
                            fstype="ext4",
                            mountpoint="/",
                        ): "50x20",
                        sel(
                            "node_filesystem_size_bytes",
                            **H,
                            device="/dev/sda1",
                            fstype="ext4",
                            mountpoint="/",
                        ): "100x20",
                        sel(
                            "node_filesystem_readonly",
                            **H,
                            device="/dev/sda1",
                            fstype="ext4",
                            mountpoint="/",
                        ): "0x20",
                    }
                ),
            ),
        ),
        Alert(
            "HostConntrackFull",
            "node_nf_conntrack_entries / node_nf_conntrack_entries_limit > 0.8",
            "10m",
            "warning",
            "network",
            "Conntrack table of {{ $labels.host }} is filling up",
            "Over 80 % of the conntrack table of {{ $labels.host }} is used: new connections of "
            "VMs and security groups will be dropped when it is full.",
            (
                Case(
                    {
                        sel("node_nf_conntrack_entries", **H): "900x20",
                        sel("node_nf_conntrack_entries_limit", **H): "1000x20",
                    },
                    ({**H},),
                ),
                Case(
                    {
                        sel("node_nf_conntrack_entries", **H): "100x20",
                        sel("node_nf_conntrack_entries_limit", **H): "1000x20",
                    }
                ),
            ),
        ),
    ),
)

# -- network: Open vSwitch (families of the OVS exporter, issue 4) -------------------------------
OV = {"job": "ovs", "instance": "kvm1:9475", "host": "kvm1", "zone": "zone1"}
TUN = {**OV, "interface": "vx-kvm02", "bridge": "br-int", "type": "vxlan"}
PORT = {**OV, "interface": "vnet0", "vm_id": "vm-1", "iface_id": "nic-1"}

NETWORK = Group(
    "network",
    (
        Alert(
            "OVSDown",
            "ovs_up == 0",
            "2m",
            "critical",
            "network",
            "Open vSwitch on {{ $labels.host }} does not answer",
            "The OVS exporter on {{ $labels.host }} cannot read ovsdb-server/ovs-vswitchd: tenant "
            "networks on this host may be down.",
            (Case({sel("ovs_up", **OV): "0x10"}, ({**OV},)), Case({sel("ovs_up", **OV): "1x10"})),
        ),
        Alert(
            "OVSReplicaStuck",
            "ovs_exporter_replica_up == 0",
            "2m",
            "warning",
            "network",
            "The OVS exporter's OVSDB replica on {{ $labels.host }} is dead or stuck",
            "The OVS exporter on {{ $labels.host }} keeps a replica of OVSDB in a thread that has "
            "not turned for 2 minutes: its port and tunnel data is not served (OVSDown fires "
            "too), although ovsdb-server may be fine.",
            (
                Case({sel("ovs_exporter_replica_up", **OV): "0x10"}, ({**OV},)),
                Case({sel("ovs_exporter_replica_up", **OV): "1x10"}),
            ),
        ),
        Alert(
            "VXLANTunnelDown",
            '(ovs_interface_link_up{type=~"vxlan|geneve|gre"} == 0 '
            'or ovs_interface_bfd_up{type=~"vxlan|geneve|gre"} == 0) '
            "* on (instance, interface) group_left (remote_ip) ovs_tunnel_info",
            "3m",
            "critical",
            "network",
            "Tunnel {{ $labels.interface }} on {{ $labels.host }} is down",
            "The {{ $labels.type }} tunnel from {{ $labels.host }} to {{ $labels.remote_ip }} has "
            "been down (link or BFD) for 3 minutes: VPC traffic between these hypervisors is cut.",
            (
                Case(
                    {
                        sel("ovs_interface_link_up", **TUN): "0x10",
                        sel("ovs_tunnel_info", **TUN, remote_ip="10.0.0.2", key="5001"): "1x10",
                    },
                    ({**TUN, "remote_ip": "10.0.0.2"},),
                    note="link down",
                ),
                Case(
                    {
                        sel("ovs_interface_link_up", **TUN): "1x10",
                        sel("ovs_interface_bfd_up", **TUN): "0x10",
                        sel("ovs_tunnel_info", **TUN, remote_ip="10.0.0.2", key="5001"): "1x10",
                    },
                    ({**TUN, "remote_ip": "10.0.0.2"},),
                    note="BFD down, link up",
                ),
                Case(
                    {
                        sel("ovs_interface_link_up", **TUN): "1x10",
                        sel("ovs_interface_bfd_up", **TUN): "1x10",
                        sel("ovs_tunnel_info", **TUN, remote_ip="10.0.0.2", key="5001"): "1x10",
                    }
                ),
            ),
        ),
        Alert(
            "OVSPortErrors",
            "rate(ovs_interface_receive_errors_total[5m]) + rate(ovs_interface_transmit_errors_total"
            "[5m]) + rate(ovs_interface_receive_drops_total[5m]) + "
            "rate(ovs_interface_transmit_drops_total[5m]) > 1",
            "10m",
            "warning",
            "network",
            "Port {{ $labels.interface }} on {{ $labels.host }} drops or errors packets",
            "OVS port {{ $labels.interface }} (VM {{ $labels.vm_id }}, NIC {{ $labels.iface_id }}) "
            "on {{ $labels.host }} had more than 1 error or drop per second for 10 minutes.",
            (
                Case(
                    {
                        sel("ovs_interface_receive_errors_total", **PORT): "0+300x20",
                        sel("ovs_interface_transmit_errors_total", **PORT): "0x20",
                        sel("ovs_interface_receive_drops_total", **PORT): "0x20",
                        sel("ovs_interface_transmit_drops_total", **PORT): "0x20",
                    },
                    ({**PORT},),
                    start=1,
                ),
                Case(
                    {
                        sel("ovs_interface_receive_errors_total", **PORT): "0+1x20",
                        sel("ovs_interface_transmit_errors_total", **PORT): "0x20",
                        sel("ovs_interface_receive_drops_total", **PORT): "0x20",
                        sel("ovs_interface_transmit_drops_total", **PORT): "0x20",
                    },
                    start=1,
                ),
            ),
        ),
    ),
)

# -- platform: metering, tenant stacks, Prometheus and Alertmanager themselves --------------------
PG = {"job": "pushgateway", "instance": "pgw:9091", "exported_job": "zcp-metering"}
TS = {"job": "tenant-prometheus", "instance": "t-acme:9090", "tenant": "acct-1"}
RC = {"job": "node", "instance": "mon1:9100"}  # the reconciler's textfile, via node_exporter
GATE = {"job": "zcp-federation-gate", "instance": "mon1:9481"}
PR = {"job": "prometheus", "instance": "prom:9090"}
AM = {"job": "alertmanager", "instance": "am:9093"}

INVSVC = {"job": "zcp-inventory", "instance": "inv:9180", "zone": "zone1"}
LVZ = {**LV}
STALE_AFTER = 1800  # 6 refreshes at the default 300 s
AGE = "zcp_inventory_age_seconds"

PLATFORM = Group(
    "platform",
    (
        Alert(
            "InventoryStale",
            f'{AGE}{{job="zcp-inventory"}} > {STALE_AFTER} or '
            f'{AGE}{{job="zcp-inventory"}} != {AGE}{{job="zcp-inventory"}}',
            "10m",
            "warning",
            "platform",
            "The inventory service {{ $labels.instance }} cannot refresh from CloudStack",
            "The inventory served by {{ $labels.instance }} (zone {{ $labels.zone }}) is over 30 "
            "minutes old, or it never loaded one: new VMs, volumes and owners are unknown to the "
            "alerts, the tenant rules and metering until CloudStack answers again.",
            (
                Case(
                    {sel(AGE, **INVSVC): "0+60x60"},
                    ({**INVSVC},),
                    start=31,
                    note="age grows from 0: stale after 30 minutes",
                ),
                Case(
                    {sel(AGE, **INVSVC): " ".join(["NaN"] * 30)}, ({**INVSVC},), note="never loaded"
                ),
                Case({sel(AGE, **INVSVC): "0+60x10 0+60x30"}, note="refreshed in time"),
            ),
        ),
        Alert(
            "ExporterInventoryStale",
            f'{AGE}{{job!="zcp-inventory"}} > {STALE_AFTER} or '
            f'{AGE}{{job!="zcp-inventory"}} != {AGE}{{job!="zcp-inventory"}}',
            "10m",
            "warning",
            "platform",
            "{{ $labels.job }} on {{ $labels.host }} labels series from an old inventory",
            "The {{ $labels.job }} exporter {{ $labels.instance }} on {{ $labels.host }} has not "
            "had a fresh inventory for 30 minutes, or never had one: it cannot reach the "
            "inventory service, and new VMs on it are reported as unknown to CloudStack.",
            (
                Case({sel(AGE, **LVZ): "0+60x60"}, ({**LVZ},), start=31),
                Case({sel(AGE, **LVZ): " ".join(["NaN"] * 30)}, ({**LVZ},), note="never loaded"),
                Case({sel(AGE, **LVZ): "0+60x10 0+60x30"}, note="refreshed in time"),
            ),
        ),
        Alert(
            "MeteringJobFailed",
            "zcp_metering_last_run_success == 0",
            "5m",
            "critical",
            "platform",
            "The metering job failed",
            "The last run of the metering job ({{ $labels.exported_job }}) failed: billing records "
            "are not being written.",
            (
                Case({sel("zcp_metering_last_run_success", **PG): "0x10"}, ({**PG},)),
                Case({sel("zcp_metering_last_run_success", **PG): "1x10"}),
            ),
        ),
        Alert(
            "MeteringJobLate",
            "time() - zcp_metering_last_success_timestamp_seconds > 2 * 3600",
            "10m",
            "warning",
            "platform",
            "The metering job is late",
            "The metering job ({{ $labels.exported_job }}) has not succeeded for over 2 hours.",
            (
                Case(
                    {sel("zcp_metering_last_success_timestamp_seconds", **PG): "0x200"},
                    ({**PG},),
                    start=120,
                    note="last success at t=0",
                ),
                Case({sel("zcp_metering_last_success_timestamp_seconds", **PG): "0+60x20"}),
            ),
        ),
        Alert(
            "TenantStackDown",
            'up{job="tenant-prometheus"} == 0',
            "5m",
            "warning",
            "platform",
            "The Prometheus of tenant {{ $labels.tenant }} is down",
            "The dedicated Prometheus of tenant {{ $labels.tenant }} ({{ $labels.instance }}) has "
            "been unreachable for 5 minutes: the customer's dashboards are empty.",
            (Case({sel("up", **TS): "0x10"}, ({**TS},)), Case({sel("up", **TS): "1x10"})),
        ),
        Alert(
            "TenantReconcileFailing",
            "zcp_tenant_reconcile_last_run_success == 0",
            "10m",
            "warning",
            "platform",
            "The tenant stacks reconcile fails on {{ $labels.instance }}",
            "The last runs of `zcp-obs tenants reconcile` on {{ $labels.instance }} had a step "
            "that failed: a tenant's stack is not created, updated or repaired.",
            (
                Case({sel("zcp_tenant_reconcile_last_run_success", **RC): "0x20"}, ({**RC},)),
                Case({sel("zcp_tenant_reconcile_last_run_success", **RC): "1x20"}),
            ),
        ),
        Alert(
            "TenantReconcileLate",
            "time() - zcp_tenant_reconcile_last_run_timestamp_seconds > 600",
            "5m",
            "warning",
            "platform",
            "The tenant stacks reconcile has not run for 10 minutes on {{ $labels.instance }}",
            "`zcp-obs tenants reconcile` last ended over 10 minutes ago on {{ $labels.instance }} "
            "(its timer runs it every minute): new tenants get no stack and drift is not repaired.",
            (
                Case(
                    {sel("zcp_tenant_reconcile_last_run_timestamp_seconds", **RC): "0x30"},
                    ({**RC},),
                    start=11,
                    note="last run at t=0: late from 10 minutes",
                ),
                Case({sel("zcp_tenant_reconcile_last_run_timestamp_seconds", **RC): "0+60x20"}),
            ),
        ),
        Alert(
            "FederationGateDown",
            'up{job="zcp-federation-gate"} == 0',
            "2m",
            "critical",
            "platform",
            "The federation gate {{ $labels.instance }} is down",
            "The federation gate {{ $labels.instance }} has been unreachable for 2 minutes: no "
            "tenant Prometheus can federate, so every customer's dashboards stop at that time.",
            (Case({sel("up", **GATE): "0x10"}, ({**GATE},)), Case({sel("up", **GATE): "1x10"})),
        ),
        Alert(
            "PrometheusRuleEvaluationFailures",
            "increase(prometheus_rule_evaluation_failures_total[5m]) > 0",
            "5m",
            "critical",
            "platform",
            "Prometheus {{ $labels.instance }} fails to evaluate rules",
            "Rule group {{ $labels.rule_group }} fails to evaluate: alerts in it cannot fire.",
            (
                Case(
                    {
                        sel(
                            "prometheus_rule_evaluation_failures_total", **PR, rule_group="g"
                        ): "0+1x20"
                    },
                    ({**PR, "rule_group": "g"},),
                    start=1,
                ),
                Case(
                    {
                        sel(
                            "prometheus_rule_evaluation_failures_total", **PR, rule_group="g"
                        ): "3x20"
                    },
                    start=1,
                ),
            ),
        ),
        Alert(
            "PrometheusNotificationsFailing",
            "rate(prometheus_notifications_errors_total[5m]) > 0",
            "5m",
            "critical",
            "platform",
            "Prometheus {{ $labels.instance }} cannot send alerts",
            "Prometheus {{ $labels.instance }} fails to send alerts to Alertmanager "
            "{{ $labels.alertmanager }}.",
            (
                Case(
                    {
                        sel(
                            "prometheus_notifications_errors_total", **PR, alertmanager="am"
                        ): "0+1x20"
                    },
                    ({**PR, "alertmanager": "am"},),
                    start=1,
                ),
                Case(
                    {sel("prometheus_notifications_errors_total", **PR, alertmanager="am"): "0x20"},
                    start=1,
                ),
            ),
        ),
        Alert(
            "PrometheusConfigReloadFailed",
            "prometheus_config_last_reload_successful == 0",
            "5m",
            "warning",
            "platform",
            "Prometheus {{ $labels.instance }} config reload failed",
            "The last configuration reload of {{ $labels.instance }} failed: it runs an old "
            "configuration.",
            (
                Case({sel("prometheus_config_last_reload_successful", **PR): "0x10"}, ({**PR},)),
                Case({sel("prometheus_config_last_reload_successful", **PR): "1x10"}),
            ),
        ),
        Alert(
            "AlertmanagerConfigReloadFailed",
            "alertmanager_config_last_reload_successful == 0",
            "5m",
            "warning",
            "platform",
            "Alertmanager {{ $labels.instance }} config reload failed",
            "The last configuration reload of {{ $labels.instance }} failed.",
            (
                Case({sel("alertmanager_config_last_reload_successful", **AM): "0x10"}, ({**AM},)),
                Case({sel("alertmanager_config_last_reload_successful", **AM): "1x10"}),
            ),
        ),
        Alert(
            "AlertmanagerNotificationsFailing",
            "rate(alertmanager_notifications_failed_total[5m]) > 0",
            "5m",
            "critical",
            "platform",
            "Alertmanager cannot deliver to {{ $labels.integration }}",
            "Alertmanager {{ $labels.instance }} fails to deliver notifications through "
            "{{ $labels.integration }}: pages may be lost.",
            (
                Case(
                    {
                        sel(
                            "alertmanager_notifications_failed_total", **AM, integration="webhook"
                        ): "0+1x20"
                    },
                    ({**AM, "integration": "webhook"},),
                    start=1,
                ),
                Case(
                    {
                        sel(
                            "alertmanager_notifications_failed_total", **AM, integration="webhook"
                        ): "0x20"
                    },
                    start=1,
                ),
            ),
        ),
    ),
)


def groups(promises: PromisesConfig | None = None) -> list[Group]:
    """All rule groups, recording rules first; the promises' as ``promises`` configures them
    (default: a production region's)."""
    return [
        TENANT,
        COMPUTE,
        NETWORK,
        ceph_alerts(),
        PLATFORM,
        *promise_groups(promises or PromisesConfig()),
    ]
