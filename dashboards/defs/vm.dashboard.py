"""VM detail: one guest's CPU (per-vCPU steal), memory, disks and NICs, and whose it is."""

from dashboards.kit import (
    RATE,
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
        uid="zcp-vm",
        title="ZCP / VM detail",
        description="One VM by its CloudStack id: CPU and per-vCPU steal, memory and balloon, "
        "per-disk IOPS/throughput/latency, per-NIC traffic and errors, its tenant.",
        tags=["zcp", "operator"],
        variables=[
            datasource(),
            # two chains to the VM: zone -> host -> VM, and tenant -> VM
            Var(
                "zone",
                "Zone",
                'label_values(zcp_vm_info{job="zcp-inventory"}, zone)',
                multi=True,
                include_all=True,
            ),
            Var(
                "host",
                "Host",
                'label_values(zcp_vm_info{job="zcp-inventory",zone=~"$zone"}, host)',
                multi=True,
                include_all=True,
            ),
            Var(
                "tenant",
                "Tenant",
                'label_values(zcp_vm_info{job="zcp-inventory"}, account_id)',
                multi=True,
                include_all=True,
            ),
            Var(
                "vm",
                "VM",
                'label_values(zcp_vm_info{job="zcp-inventory",zone=~"$zone",'
                'host=~"$host",account_id=~"$tenant"}, vm_id)',
            ),
        ],
        rows=[
            Row(
                "Identity",
                [
                    table(
                        "VM",
                        "CloudStack identity from the inventory service.",
                        Q(f'zcp_vm_info{{job="zcp-inventory",{V}}}'),
                        hide=("Time", "Value", "__name__", "instance", "job"),
                        width=18,
                        height=4,
                    ),
                    stat(
                        "State",
                        "libvirt's state of the domain (1 = running).",
                        f"max(libvirt_domain_state{{{V}}})",
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
                ],
            ),
            Row(
                "CPU and memory",
                [
                    timeseries(
                        "CPU",
                        "CPU the guest used, in CPUs, and its vCPUs.",
                        Q(
                            f"sum(rate(libvirt_domain_cpu_time_seconds_total{{{V}}}[{RATE}]))",
                            "used",
                        ),
                        Q(f"max(libvirt_domain_vcpus{{{V}}})", "vCPUs"),
                        unit="none",
                    ),
                    timeseries(
                        "Steal per vCPU",
                        "Time each vCPU waited for a host CPU (run delay), as a share of the time.",
                        Q(
                            f"sum by (vcpu) (rate(libvirt_domain_vcpu_delay_seconds_total{{{V}}}"
                            f"[{RATE}]))",
                            "vCPU {{vcpu}}",
                        ),
                        unit="percentunit",
                    ),
                    timeseries(
                        "Memory",
                        "Maximum, balloon (current) and what the guest reports usable.",
                        Q(f"max(libvirt_domain_memory_maximum_bytes{{{V}}})", "maximum"),
                        Q(f"max(libvirt_domain_memory_balloon_bytes{{{V}}})", "balloon"),
                        Q(f"max(libvirt_domain_memory_rss_bytes{{{V}}})", "RSS on the host"),
                        unit="bytes",
                    ),
                ],
            ),
            Row(
                "Disks",
                [
                    timeseries(
                        "IOPS",
                        "Read and write requests per second, per disk.",
                        Q(
                            f"sum by (device) (rate(libvirt_domain_block_read_requests_total"
                            f"{{{V}}}[{RATE}]))",
                            "{{device}} read",
                        ),
                        Q(
                            f"sum by (device) (rate(libvirt_domain_block_write_requests_total"
                            f"{{{V}}}[{RATE}]))",
                            "{{device}} write",
                        ),
                        unit="iops",
                    ),
                    timeseries(
                        "Throughput",
                        "Bytes read and written per second, per disk.",
                        Q(
                            f"sum by (device) (rate(libvirt_domain_block_read_bytes_total"
                            f"{{{V}}}[{RATE}]))",
                            "{{device}} read",
                        ),
                        Q(
                            f"sum by (device) (rate(libvirt_domain_block_write_bytes_total"
                            f"{{{V}}}[{RATE}]))",
                            "{{device}} write",
                        ),
                        unit="Bps",
                    ),
                    timeseries(
                        "Latency",
                        "Mean time per request, per disk (zero while idle).",
                        Q(
                            f"sum by (device) (rate(libvirt_domain_block_read_time_seconds_total"
                            f"{{{V}}}[{RATE}])) / clamp_min(sum by (device) (rate("
                            f"libvirt_domain_block_read_requests_total{{{V}}}[{RATE}])), 1e-9)",
                            "{{device}} read",
                        ),
                        Q(
                            f"sum by (device) (rate(libvirt_domain_block_write_time_seconds_total"
                            f"{{{V}}}[{RATE}])) / clamp_min(sum by (device) (rate("
                            f"libvirt_domain_block_write_requests_total{{{V}}}[{RATE}])), 1e-9)",
                            "{{device}} write",
                        ),
                        unit="s",
                    ),
                ],
            ),
            Row(
                "Network",
                [
                    timeseries(
                        "Traffic",
                        "Bytes per second per vNIC, from the guest's side.",
                        Q(
                            f"sum by (device, mac) (rate("
                            f"libvirt_domain_interface_receive_bytes_total{{{V}}}[{RATE}]))",
                            "{{mac}} received",
                        ),
                        Q(
                            f"sum by (device, mac) (rate("
                            f"libvirt_domain_interface_transmit_bytes_total{{{V}}}[{RATE}]))",
                            "{{mac}} sent",
                        ),
                        unit="Bps",
                    ),
                    timeseries(
                        "Errors and drops",
                        "Packets per second lost or in error, per vNIC.",
                        Q(
                            f"sum by (mac) (rate(libvirt_domain_interface_receive_errors_total"
                            f"{{{V}}}[{RATE}]) + rate(libvirt_domain_interface_transmit_errors_total"
                            f"{{{V}}}[{RATE}]))",
                            "{{mac}} errors",
                        ),
                        Q(
                            f"sum by (mac) (rate(libvirt_domain_interface_receive_drops_total"
                            f"{{{V}}}[{RATE}]) + rate(libvirt_domain_interface_transmit_drops_total"
                            f"{{{V}}}[{RATE}]))",
                            "{{mac}} drops",
                        ),
                        unit="pps",
                    ),
                ],
            ),
        ],
    )
)
