"""Hypervisor host: the machine (node_exporter) and the guests libvirt runs on it."""

from dashboards.kit import (
    GREEN,
    RATE,
    RED,
    YELLOW,
    Q,
    Row,
    Spec,
    Var,
    dashboard,
    datasource,
    gauge,
    stat,
    table,
    timeseries,
)

H = 'host="$host"'

dashboard = dashboard(
    Spec(
        uid="zcp-hypervisor",
        title="ZCP / Hypervisor host",
        description="One KVM hypervisor: CPU (steal included), memory, disks and network from "
        "node_exporter, and the guests libvirt runs on it.",
        tags=["zcp", "operator"],
        variables=[
            datasource(),
            Var("zone", "Zone", "label_values(libvirt_up, zone)"),
            Var("host", "Host", 'label_values(libvirt_up{zone="$zone"}, host)'),
        ],
        rows=[
            Row(
                "Health",
                [
                    stat(
                        "libvirt exporter",
                        "1 when the exporter reaches libvirtd on this host.",
                        f"min(libvirt_up{{{H}}})",
                        unit="none",
                        thresholds=((None, RED), (1, GREEN)),
                        mappings=[
                            {
                                "type": "value",
                                "options": {
                                    "0": {"text": "down", "color": "red", "index": 0},
                                    "1": {"text": "up", "color": "green", "index": 1},
                                },
                            }
                        ],
                    ),
                    stat(
                        "Guests running",
                        "Domains in state running.",
                        f"count(libvirt_domain_state{{{H}}} == 1) or vector(0)",
                        unit="none",
                    ),
                    stat(
                        "vCPUs allocated",
                        "vCPUs of the running guests.",
                        f"sum(libvirt_domain_vcpus{{{H}}} and on (vm_id) "
                        f"(libvirt_domain_state{{{H}}} == 1))",
                        unit="none",
                    ),
                    stat(
                        "Host CPUs",
                        "Logical CPUs of the host.",
                        f'count(node_cpu_seconds_total{{{H},mode="idle"}})',
                        unit="none",
                    ),
                    gauge(
                        "Memory used",
                        "Share of the host's memory in use.",
                        f"100 * (1 - node_memory_MemAvailable_bytes{{{H}}} / "
                        f"node_memory_MemTotal_bytes{{{H}}})",
                        unit="percent",
                        thresholds=((None, GREEN), (80, YELLOW), (95, RED)),
                        height=4,
                    ),
                ],
            ),
            Row(
                "Promises: dedicated vCPUs and RAM",
                [
                    stat(
                        "vCPU overcommit",
                        "Running guests' vCPUs per host core. Production plans promise at most "
                        "1 (alerting.promises.cpu_overcommit_max; alert HostVCPUOvercommitted).",
                        Q(f"max(host:vcpu_overcommit:ratio{{{H}}})", "vCPUs per core"),
                        unit="none",
                        thresholds=((None, GREEN), (1.0001, RED)),
                    ),
                    stat(
                        "Memory overcommit",
                        "Running guests' memory per byte of host memory (alert "
                        "HostMemoryOvercommitted above alerting.promises.memory_overcommit_max).",
                        Q(f"max(host:memory_overcommit:ratio{{{H}}})", "guest / host memory"),
                        unit="none",
                        thresholds=((None, GREEN), (1.0001, RED)),
                    ),
                    stat(
                        "Production VMs",
                        "Guests on this host whose service offering is a production plan "
                        "(alerting.promises.production_offerings).",
                        f"max(host:production_vms:count{{{H}}}) or vector(0)",
                        unit="none",
                    ),
                    timeseries(
                        "vCPU wait per guest (steal)",
                        "Share of each guest's runnable vCPU time spent waiting for a host CPU "
                        "(vCPU delay). Production VMs page above alerting.promises.steal_max "
                        "(ProductionVMCPUStarved).",
                        Q(
                            f"sum by (instance_name) (rate(libvirt_domain_vcpu_delay_seconds_total"
                            f"{{{H}}}[{RATE}])) / sum by (instance_name) "
                            f"(rate(libvirt_domain_vcpu_time_seconds_total{{{H}}}[{RATE}]) + "
                            f"rate(libvirt_domain_vcpu_delay_seconds_total{{{H}}}[{RATE}]))",
                            "{{instance_name}}",
                        ),
                        unit="percentunit",
                        width=12,
                    ),
                ],
            ),
            Row(
                "CPU",
                [
                    timeseries(
                        "CPU by mode",
                        "Host CPU time per mode, in CPUs.",
                        Q(
                            f'sum by (mode) (rate(node_cpu_seconds_total{{{H},mode!="idle"}}'
                            f"[{RATE}]))",
                            "{{mode}}",
                        ),
                        unit="none",
                        stack=True,
                    ),
                    timeseries(
                        "Steal",
                        "Time the host's own CPUs were stolen (it is itself a guest), in CPUs.",
                        Q(
                            f'sum(rate(node_cpu_seconds_total{{{H},mode="steal"}}[{RATE}]))',
                            "steal",
                        ),
                        unit="none",
                    ),
                    timeseries(
                        "Guests' CPU",
                        "CPU each guest used, in CPUs.",
                        Q(
                            f"sum by (instance_name) (rate(libvirt_domain_cpu_time_seconds_total"
                            f"{{{H}}}[{RATE}]))",
                            "{{instance_name}}",
                        ),
                        unit="none",
                        stack=True,
                    ),
                ],
            ),
            Row(
                "Memory, disks, network",
                [
                    timeseries(
                        "Memory",
                        "Host memory: total and available.",
                        Q(f"node_memory_MemTotal_bytes{{{H}}}", "total"),
                        Q(f"node_memory_MemAvailable_bytes{{{H}}}", "available"),
                        unit="bytes",
                    ),
                    timeseries(
                        "Disk throughput",
                        "Bytes read and written per second, all disks.",
                        Q(f"sum(rate(node_disk_read_bytes_total{{{H}}}[{RATE}]))", "read"),
                        Q(f"sum(rate(node_disk_written_bytes_total{{{H}}}[{RATE}]))", "written"),
                        unit="Bps",
                    ),
                    timeseries(
                        "Network",
                        "Bytes per second per interface (loopback excluded).",
                        Q(
                            f"sum by (device) (rate(node_network_receive_bytes_total{{{H},"
                            f'device!="lo"}}[{RATE}]))',
                            "{{device}} in",
                        ),
                        Q(
                            f"sum by (device) (rate(node_network_transmit_bytes_total{{{H},"
                            f'device!="lo"}}[{RATE}]))',
                            "{{device}} out",
                        ),
                        unit="Bps",
                        legend="list",
                        calcs=(),
                    ),
                ],
            ),
            Row(
                "Guests",
                [
                    table(
                        "Guests on this host",
                        "Every domain libvirt has here: state, vCPUs, memory.",
                        Q(f"libvirt_domain_state{{{H}}}"),
                        Q(f"libvirt_domain_vcpus{{{H}}}"),
                        Q(f"libvirt_domain_memory_maximum_bytes{{{H}}}"),
                        hide=("Time", "__name__", "instance", "job", "zone", "host"),
                        rename={"Value #A": "state", "Value #B": "vCPUs", "Value #C": "memory"},
                        width=24,
                    ),
                ],
            ),
        ],
    )
)
