"""Cloud overview: zones, hypervisors, VMs by state, tenants, what is paging now."""

from dashboards.kit import (
    GREEN,
    RED,
    YELLOW,
    Q,
    Row,
    Spec,
    Var,
    bars,
    dashboard,
    datasource,
    stat,
    table,
    timeseries,
)

Z = 'zone=~"$zone"'

dashboard = dashboard(
    Spec(
        uid="zcp-cloud-overview",
        title="ZCP / Cloud overview",
        description="The whole cloud at a glance: zones, hypervisors, VMs by state, tenants and "
        "the alerts firing now.",
        tags=["zcp", "operator"],
        variables=[
            datasource(),
            Var(
                "zone",
                "Zone",
                'label_values(zcp_vm_state{job="zcp-inventory"}, zone)',
                multi=True,
                include_all=True,
            ),
        ],
        rows=[
            Row(
                "Capacity",
                [
                    stat(
                        "Zones",
                        "Zones with VMs in the inventory.",
                        f'count(count by (zone) (zcp_vm_state{{job="zcp-inventory",{Z}}}))',
                        unit="none",
                    ),
                    stat(
                        "Hypervisors up",
                        "Hypervisors whose libvirt exporter answers.",
                        f'sum(up{{job="libvirt",{Z}}})',
                        unit="none",
                    ),
                    stat(
                        "Hypervisors down",
                        "Hypervisors whose libvirt exporter does not answer.",
                        f'count(up{{job="libvirt",{Z}}} == 0) or vector(0)',
                        unit="none",
                        thresholds=((None, GREEN), (1, RED)),
                    ),
                    stat(
                        "VMs",
                        "VMs CloudStack knows, any state.",
                        f'count(zcp_vm_state{{job="zcp-inventory",{Z}}})',
                        unit="none",
                    ),
                    stat(
                        "Tenants",
                        "Accounts owning at least one VM.",
                        f'count(count by (account_id) (zcp_vm_state{{job="zcp-inventory",{Z}}}))',
                        unit="none",
                    ),
                    stat(
                        "Alerts firing",
                        "Alerts firing now, any severity.",
                        'count(ALERTS{alertstate="firing"}) or vector(0)',
                        unit="none",
                        thresholds=((None, GREEN), (1, YELLOW), (5, RED)),
                    ),
                ],
            ),
            Row(
                "VMs",
                [
                    timeseries(
                        "VMs by state",
                        "VMs per CloudStack state over time.",
                        Q(
                            f'count by (state) (zcp_vm_state{{job="zcp-inventory",{Z}}})',
                            "{{state}}",
                        ),
                        unit="none",
                        stack=True,
                        width=12,
                    ),
                    timeseries(
                        "Running guests by hypervisor",
                        "Guests libvirt reports running, per hypervisor.",
                        Q(f"count by (host) (libvirt_domain_state{{{Z}}} == 1)", "{{host}}"),
                        unit="none",
                        stack=True,
                        width=12,
                    ),
                    bars(
                        "Top tenants by VMs",
                        "Accounts with the most VMs.",
                        Q(
                            f'topk(10, count by (account) (zcp_vm_info{{job="zcp-inventory",{Z}}}))',
                            "{{account}}",
                            instant=True,
                        ),
                        unit="none",
                        width=12,
                    ),
                    bars(
                        "Top tenants by vCPUs running",
                        "vCPUs of running guests per account.",
                        Q(
                            "topk(10, sum by (account) (libvirt_domain_vcpus * on (vm_id) "
                            "group_left (account) max by (vm_id, account) "
                            f'(zcp_vm_info{{job="zcp-inventory",{Z}}})))',
                            "{{account}}",
                            instant=True,
                        ),
                        unit="none",
                        width=12,
                    ),
                ],
            ),
            Row(
                "Alerts",
                [
                    table(
                        "Firing alerts",
                        "What pages now, newest rules first.",
                        Q('ALERTS{alertstate="firing"}'),
                        hide=("Time", "Value", "__name__", "alertstate", "instance", "job"),
                        width=24,
                    ),
                    timeseries(
                        "Alerts firing by severity",
                        "Firing alerts over time.",
                        Q(
                            'count by (severity) (ALERTS{alertstate="firing"}) or '
                            'label_replace(vector(0), "severity", "none", "", "")',
                            "{{severity}}",
                        ),
                        unit="none",
                        stack=True,
                        width=24,
                    ),
                ],
            ),
        ],
    )
)
