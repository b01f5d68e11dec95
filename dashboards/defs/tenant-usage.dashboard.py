"""A tenant's usage this month, in the tenant's own Grafana, as the metering job billed it."""

from dashboards.kit import Q, Row, Spec, bars, dashboard, datasource, stat, table

dashboard = dashboard(
    Spec(
        uid="zcp-tenant-usage",
        title="My cloud / Usage this month",
        description="What has been metered in the current billing month, per meter, and its "
        "amount so far (the monthly statement is the exact figure).",
        tags=["zcp", "tenant"],
        variables=[datasource()],
        time_from="now/M",
        rows=[
            Row(
                "This month",
                [
                    stat(
                        "Charges so far",
                        "Amount charged in the billing month so far.",
                        Q("sum by (currency) (tenant:zcp_metering_charges:max)", "{{currency}}"),
                        unit="none",
                        width=8,
                    ),
                    bars(
                        "Usage by meter",
                        "Billing units per meter this month.",
                        Q("tenant:zcp_metering_usage:max", "{{meter}} ({{unit}})", instant=True),
                        unit="none",
                        width=16,
                    ),
                    table(
                        "Details",
                        "Every meter with its billing unit.",
                        Q("tenant:zcp_metering_usage:max"),
                        hide=("Time", "__name__", "tenant"),
                        rename={"Value": "quantity"},
                        width=24,
                    ),
                ],
            ),
        ],
    )
)
