"""A tenant's VM detail, in the tenant's own Grafana."""

from dashboards.kit import (
    Q,
    Row,
    Spec,
    Var,
    dashboard,
    datasource,
    stat,
    table,
    timeseries,
)

V = 'vm_id="$vm"'

dashboard = dashboard(
    Spec(
        uid="zcp-tenant-vm",
        title="My cloud / VM",
        description="One of your VMs: CPU and steal, memory, disks, network.",
        tags=["zcp", "tenant"],
        variables=[
            datasource(),
            Var("vm", "VM", "label_values(tenant:zcp_vm_info:max, vm_id)"),
        ],
        rows=[
            Row(
                "VM",
                [
                    table(
                        "Identity",
                        "Name, offering and zone of the VM.",
                        Q(f"tenant:zcp_vm_info:max{{{V}}}"),
                        hide=(
                            "Time",
                            "Value",
                            "__name__",
                            "tenant",
                            "account_id",
                            "domain_id",
                            "host",
                            "instance_name",
                        ),
                        width=18,
                        height=4,
                    ),
                    stat(
                        "State",
                        "Running or not.",
                        f"max(tenant:libvirt_domain_state:max{{{V}}})",
                        unit="none",
                        width=6,
                        mappings=[
                            {
                                "type": "value",
                                "options": {
                                    "1": {"text": "running", "color": "green", "index": 0},
                                    "3": {"text": "paused", "color": "yellow", "index": 1},
                                    "5": {"text": "shut off", "color": "red", "index": 2},
                                },
                            }
                        ],
                    ),
                    timeseries(
                        "CPU",
                        "CPU used (in CPUs) against the VM's vCPUs.",
                        Q(f"tenant:libvirt_domain_cpu_time_seconds:rate5m{{{V}}}", "used"),
                        Q(f"tenant:libvirt_domain_vcpus:max{{{V}}}", "vCPUs"),
                        unit="none",
                    ),
                    timeseries(
                        "CPU steal",
                        "Time the VM's vCPUs waited for the host, as a share (all vCPUs).",
                        Q(f"tenant:libvirt_domain_vcpu_delay_seconds:rate5m{{{V}}}", "steal"),
                        unit="percentunit",
                    ),
                    timeseries(
                        "Memory",
                        "Memory size and what the guest process holds on the host.",
                        Q(f"tenant:libvirt_domain_memory_maximum_bytes:max{{{V}}}", "size"),
                        Q(f"tenant:libvirt_domain_memory_balloon_bytes:max{{{V}}}", "balloon"),
                        unit="bytes",
                    ),
                ],
            ),
            Row(
                "Disks and network",
                [
                    timeseries(
                        "Disk IOPS",
                        "Requests per second per disk.",
                        Q(
                            f"tenant:libvirt_domain_block_read_requests:rate5m{{{V}}}",
                            "{{device}} read",
                        ),
                        Q(
                            f"tenant:libvirt_domain_block_write_requests:rate5m{{{V}}}",
                            "{{device}} write",
                        ),
                        unit="iops",
                    ),
                    timeseries(
                        "Disk throughput",
                        "Bytes per second per disk.",
                        Q(
                            f"tenant:libvirt_domain_block_read_bytes:rate5m{{{V}}}",
                            "{{device}} read",
                        ),
                        Q(
                            f"tenant:libvirt_domain_block_write_bytes:rate5m{{{V}}}",
                            "{{device}} write",
                        ),
                        unit="Bps",
                    ),
                    timeseries(
                        "Network",
                        "Bytes per second per vNIC.",
                        Q(
                            f"tenant:libvirt_domain_interface_transmit_bytes:rate5m{{{V}}}",
                            "{{mac}} sent",
                        ),
                        Q(
                            f"tenant:libvirt_domain_interface_receive_bytes:rate5m{{{V}}}",
                            "{{mac}} received",
                        ),
                        unit="Bps",
                    ),
                    timeseries(
                        "Network errors and drops",
                        "Packets per second in error or dropped.",
                        Q(
                            f"tenant:libvirt_domain_interface_errors:rate5m{{{V}}}",
                            "{{mac}} errors",
                        ),
                        Q(f"tenant:libvirt_domain_interface_drops:rate5m{{{V}}}", "{{mac}} drops"),
                        unit="pps",
                    ),
                ],
            ),
        ],
    )
)
