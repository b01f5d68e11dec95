"""Metering: usage by tenant and meter as the job last computed it, and the job's health."""

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

M = 'job="zcp-metering"'

dashboard = dashboard(
    Spec(
        uid="zcp-metering",
        title="ZCP / Metering",
        description="What the metering job billed (month to date, per tenant and meter, in "
        "billing units; the statements are the exact figures) and whether the job "
        "runs: last success, records, coverage warnings, duration.",
        tags=["zcp", "operator"],
        variables=[
            datasource(),
            Var(
                "meter",
                "Meter",
                f"label_values(zcp_metering_usage{{{M}}}, meter)",
                multi=True,
                include_all=True,
            ),
            Var(
                "tenant",
                "Tenant",
                f"label_values(zcp_metering_usage{{{M}}}, account_id)",
                multi=True,
                include_all=True,
            ),
        ],
        rows=[
            Row(
                "The job",
                [
                    stat(
                        "Last run",
                        "1 when the last run succeeded.",
                        f"max(zcp_metering_last_run_success{{{M}}})",
                        unit="none",
                        thresholds=((None, RED), (1, GREEN)),
                        mappings=[
                            {
                                "type": "value",
                                "options": {
                                    "0": {"text": "failed", "color": "red", "index": 0},
                                    "1": {"text": "ok", "color": "green", "index": 1},
                                },
                            }
                        ],
                    ),
                    stat(
                        "Since the last success",
                        "Time since the last successful run ended.",
                        f"time() - max(zcp_metering_last_success_timestamp_seconds{{{M}}})",
                        unit="s",
                        thresholds=((None, GREEN), (7200, YELLOW), (14400, RED)),
                    ),
                    stat(
                        "Metered up to",
                        "End of the last hour metered (the watermark).",
                        f"max(zcp_metering_watermark_timestamp_seconds{{{M}}}) * 1000",
                        unit="dateTimeAsIso",
                    ),
                    stat(
                        "Records written",
                        "Usage records the last run wrote.",
                        f"max(zcp_metering_records_written{{{M}}})",
                        unit="none",
                    ),
                    stat(
                        "Coverage warnings",
                        "Records of the last run with unbilled time (a scrape gap) or no owner.",
                        f"max(zcp_metering_coverage_warnings{{{M}}})",
                        unit="none",
                        thresholds=((None, GREEN), (1, YELLOW)),
                    ),
                    stat(
                        "Duration",
                        "How long the last run took.",
                        f"max(zcp_metering_last_run_duration_seconds{{{M}}})",
                        unit="s",
                    ),
                ],
            ),
            Row(
                "Usage, month to date",
                [
                    table(
                        "Usage by tenant and meter",
                        "Billing units per tenant and meter in the month of the last hour metered.",
                        Q(
                            f"sum by (account_id, meter, unit, month) (zcp_metering_usage{{{M},"
                            f'account_id=~"$tenant",meter=~"$meter"}})'
                        ),
                        hide=("Time",),
                        rename={"Value": "quantity"},
                        width=24,
                    ),
                    bars(
                        "Top tenants by charges",
                        "Amount charged month to date, per tenant.",
                        Q(
                            f"topk(10, sum by (account_id, currency) (zcp_metering_charges{{{M},"
                            f'account_id=~"$tenant"}}))',
                            "{{account_id}} ({{currency}})",
                            instant=True,
                        ),
                        unit="none",
                        width=12,
                    ),
                    timeseries(
                        "Usage over time",
                        "Month-to-date usage as each run pushed it.",
                        Q(
                            f'sum by (meter) (zcp_metering_usage{{{M},account_id=~"$tenant",'
                            f'meter=~"$meter"}})',
                            "{{meter}}",
                        ),
                        unit="none",
                        width=12,
                    ),
                ],
            ),
        ],
    )
)
