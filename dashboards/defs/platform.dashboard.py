"""Platform self-monitoring: every exporter, Prometheus, Alertmanager, the inventory service,
the metering job and the tenant stacks, each by its own health metrics."""

from dashboards.kit import (
    GREEN,
    RATE,
    RED,
    Q,
    Row,
    Spec,
    dashboard,
    datasource,
    states,
    table,
    timeseries,
    value_map,
)

UPDOWN = [value_map({"0": ("down", RED), "1": ("up", GREEN)})]

dashboard = dashboard(
    Spec(
        uid="zcp-platform",
        title="ZCP / Platform",
        description="The observability stack watching itself: targets up, exporters' collection "
        "durations and source health, Prometheus, Alertmanager, the inventory "
        "service, the metering job, the tenant stacks.",
        tags=["zcp", "operator"],
        variables=[datasource()],
        rows=[
            Row(
                "Targets",
                [
                    states(
                        "Targets up",
                        "Every scrape target, by job and instance.",
                        Q("up", "{{job}} {{instance}}"),
                        mappings=UPDOWN,
                        width=24,
                        height=10,
                    ),
                    timeseries(
                        "Scrape duration",
                        "How long each target takes to scrape.",
                        Q("scrape_duration_seconds", "{{job}} {{instance}}"),
                        unit="s",
                        width=12,
                    ),
                    timeseries(
                        "Samples scraped",
                        "Samples per scrape, by job.",
                        Q("sum by (job) (scrape_samples_scraped)", "{{job}}"),
                        unit="none",
                        width=12,
                    ),
                ],
            ),
            Row(
                "Exporters",
                [
                    timeseries(
                        "libvirt collection",
                        "Duration of the libvirt exporter's collections.",
                        Q("libvirt_exporter_collection_duration_seconds", "{{host}}"),
                        unit="s",
                    ),
                    timeseries(
                        "OVS collectors",
                        "Success of each OVS collector (1 = ok).",
                        Q("ovs_collector_success", "{{host}} {{collector}}"),
                        unit="none",
                    ),
                    timeseries(
                        "Ceph sources",
                        "Each Ceph source's health (1 = up).",
                        Q("ceph_exporter_source_up", "{{source}}"),
                        unit="none",
                    ),
                    timeseries(
                        "Inventory service",
                        "Snapshot requests answered per second.",
                        Q(
                            f"sum by (code) (rate(zcp_inventory_service_requests_total[{RATE}]))",
                            "{{code}}",
                        ),
                        unit="reqps",
                    ),
                ],
            ),
            Row(
                "Prometheus and Alertmanager",
                [
                    timeseries(
                        "Head series",
                        "Series in Prometheus's head block.",
                        Q("prometheus_tsdb_head_series", "{{instance}}"),
                        unit="none",
                    ),
                    timeseries(
                        "Rule evaluation failures",
                        "Failed rule evaluations per second.",
                        Q(
                            f"sum(rate(prometheus_rule_evaluation_failures_total[{RATE}]))",
                            "failures",
                        ),
                        unit="none",
                    ),
                    timeseries(
                        "Notifications",
                        "Alertmanager notifications sent and failed, per second.",
                        Q(
                            f"sum by (integration) (rate(alertmanager_notifications_total"
                            f"[{RATE}]))",
                            "{{integration}} sent",
                        ),
                        Q(
                            f"sum by (integration) (rate("
                            f"alertmanager_notifications_failed_total[{RATE}]))",
                            "{{integration}} failed",
                        ),
                        unit="none",
                    ),
                ],
            ),
            Row(
                "Metering and tenant stacks",
                [
                    table(
                        "Metering job",
                        "The last run: success, records, warnings.",
                        Q('zcp_metering_last_run_success{job="zcp-metering"}'),
                        Q('zcp_metering_records_written{job="zcp-metering"}'),
                        Q('zcp_metering_coverage_warnings{job="zcp-metering"}'),
                        hide=("Time", "__name__", "instance", "job", "exported_job"),
                        rename={
                            "Value #A": "success",
                            "Value #B": "records",
                            "Value #C": "coverage warnings",
                        },
                        width=12,
                    ),
                    states(
                        "Tenant stacks",
                        "Each tenant's Prometheus as the operator's scrapes it.",
                        Q('up{job="tenant-prometheus"}', "{{tenant}}"),
                        mappings=UPDOWN,
                        width=12,
                    ),
                ],
            ),
            Row(
                "Tenant stacks: reconcile and federation gate",
                [
                    table(
                        "Tenant reconcile",
                        "The last `zcp-obs tenants reconcile`: whether every step worked, how "
                        "long ago it ended, how long it took (TenantReconcileFailing, "
                        "TenantReconcileLate).",
                        Q('zcp_tenant_reconcile_last_run_success{job="zcp-tenants"}'),
                        Q(
                            "time() - "
                            'zcp_tenant_reconcile_last_run_timestamp_seconds{job="zcp-tenants"}'
                        ),
                        Q('zcp_tenant_reconcile_duration_seconds{job="zcp-tenants"}'),
                        hide=("Time", "__name__", "instance", "job", "exported_job"),
                        rename={
                            "Value #A": "success",
                            "Value #B": "ended s ago",
                            "Value #C": "took s",
                        },
                        width=8,
                    ),
                    table(
                        "Stacks by tenant",
                        "Each stack as the reconciler left it: up, tier, status and config "
                        "version (zcp_tenant_stack_drift_repaired_total counts its repairs).",
                        Q('zcp_tenant_stack_up{job="zcp-tenants",component="prometheus"}'),
                        Q('zcp_tenant_stack_info{job="zcp-tenants"}'),
                        hide=("Time", "__name__", "instance", "job", "exported_job", "component"),
                        rename={"Value #A": "up", "Value #B": "stacks"},
                        width=8,
                    ),
                    timeseries(
                        "Federation gate answers",
                        "Federation requests through the gate per second, by tenant and status "
                        "(401: a bad token, 400: a refused selector, 502: the operator "
                        "Prometheus did not answer).",
                        Q(
                            "sum by (tenant, code) "
                            '(rate(zcp_gate_requests_total{job="zcp-federation-gate"}[$__rate_interval]))',
                            "{{tenant}} {{code}}",
                        ),
                        unit="reqps",
                        width=8,
                    ),
                ],
            ),
        ],
    )
)
