"""A tenant's overview, in the tenant's own Grafana: their VMs, volumes and buckets."""

from dashboards.kit import (
    Q,
    Row,
    Spec,
    bars,
    dashboard,
    datasource,
    stat,
    table,
    timeseries,
)

dashboard = dashboard(
    Spec(
        uid="zcp-tenant-overview",
        title="My cloud / Overview",
        description="Your VMs, volumes and object storage at a glance.",
        tags=["zcp", "tenant"],
        variables=[datasource()],
        rows=[
            Row(
                "At a glance",
                [
                    stat(
                        "VMs", "VMs in your account.", "count(tenant:zcp_vm_info:max)", unit="none"
                    ),
                    stat(
                        "Running",
                        "VMs running now.",
                        "count(tenant:libvirt_domain_state:max == 1) or vector(0)",
                        unit="none",
                    ),
                    stat(
                        "vCPUs running",
                        "vCPUs of your running VMs.",
                        "sum(tenant:libvirt_domain_vcpus:max and on (vm_id) "
                        "(tenant:libvirt_domain_state:max == 1))",
                        unit="none",
                    ),
                    stat(
                        "Block storage",
                        "Provisioned size of your volumes.",
                        "sum(tenant:ceph_rbd_image_provisioned_bytes:sum)",
                        unit="bytes",
                    ),
                    stat(
                        "Object storage",
                        "Bytes in your buckets.",
                        "sum(tenant:ceph_rgw_user_stored_bytes:sum)",
                        unit="bytes",
                    ),
                ],
            ),
            Row(
                "VMs",
                [
                    table(
                        "Your VMs",
                        "Each VM: name, offering, zone.",
                        Q("tenant:zcp_vm_info:max"),
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
                        width=24,
                    ),
                    timeseries(
                        "CPU by VM",
                        "CPU each VM uses, in CPUs.",
                        Q(
                            "tenant:libvirt_domain_cpu_time_seconds:rate5m * on (vm_id) "
                            "group_left (vm_name) max by (vm_id, vm_name) "
                            "(tenant:zcp_vm_info:max)",
                            "{{vm_name}}",
                        ),
                        unit="none",
                        stack=True,
                    ),
                    timeseries(
                        "Network by VM",
                        "Bytes per second sent and received, per VM.",
                        Q(
                            "sum by (vm_id) (tenant:libvirt_domain_interface_transmit_bytes:"
                            "rate5m)",
                            "{{vm_id}} sent",
                        ),
                        Q(
                            "sum by (vm_id) (tenant:libvirt_domain_interface_receive_bytes:rate5m)",
                            "{{vm_id}} received",
                        ),
                        unit="Bps",
                    ),
                ],
            ),
            Row(
                "Storage",
                [
                    bars(
                        "Block storage by class",
                        "Provisioned bytes per storage class.",
                        Q(
                            "tenant:ceph_rbd_image_provisioned_bytes:sum",
                            "{{storage_class}}",
                            instant=True,
                        ),
                        unit="bytes",
                    ),
                    bars(
                        "Buckets",
                        "Bytes per bucket.",
                        Q("tenant:ceph_rgw_bucket_stored_bytes:max", "{{bucket}}", instant=True),
                        unit="bytes",
                    ),
                ],
            ),
        ],
    )
)
