"""A tenant's network, in the tenant's own Grafana: traffic per VM and vNIC."""

from dashboards.kit import Q, Row, Spec, bars, dashboard, datasource, timeseries

dashboard = dashboard(
    Spec(
        uid="zcp-tenant-network",
        title="My cloud / Network",
        description="Traffic of your vNICs, errors and drops.",
        tags=["zcp", "tenant"],
        variables=[datasource()],
        rows=[
            Row(
                "Traffic",
                [
                    timeseries(
                        "Sent",
                        "Bytes per second your VMs send, per vNIC.",
                        Q(
                            "tenant:libvirt_domain_interface_transmit_bytes:rate5m",
                            "{{vm_id}} {{mac}}",
                        ),
                        unit="Bps",
                        stack=True,
                    ),
                    timeseries(
                        "Received",
                        "Bytes per second your VMs receive, per vNIC.",
                        Q(
                            "tenant:libvirt_domain_interface_receive_bytes:rate5m",
                            "{{vm_id}} {{mac}}",
                        ),
                        unit="Bps",
                        stack=True,
                    ),
                    bars(
                        "Busiest vNICs",
                        "Sent + received now.",
                        Q(
                            "topk(10, tenant:libvirt_domain_interface_transmit_bytes:rate5m + "
                            "tenant:libvirt_domain_interface_receive_bytes:rate5m)",
                            "{{mac}}",
                            instant=True,
                        ),
                        unit="Bps",
                        width=24,
                    ),
                    timeseries(
                        "Errors and drops",
                        "Packets per second in error or dropped.",
                        Q(
                            "sum by (mac) (tenant:libvirt_domain_interface_errors:rate5m)",
                            "{{mac}} errors",
                        ),
                        Q(
                            "sum by (mac) (tenant:libvirt_domain_interface_drops:rate5m)",
                            "{{mac}} drops",
                        ),
                        unit="pps",
                        width=24,
                    ),
                ],
            ),
        ],
    )
)
