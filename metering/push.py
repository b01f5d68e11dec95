"""The job's own metrics, pushed to the Pushgateway after every run (the alert rules watch
``zcp_metering_last_run_success`` and ``zcp_metering_last_success_timestamp_seconds``)."""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway

from metering.job import RunResult

log = logging.getLogger(__name__)
JOB = "zcp-metering"


def registry_for(result: RunResult | None, error: str) -> CollectorRegistry:
    """The metrics of one run (``result`` None: it failed with ``error``)."""
    reg = CollectorRegistry()
    Gauge("zcp_metering_last_run_success", "1 if the last metering run succeeded.",
          registry=reg).set(0 if result is None else 1)
    Gauge("zcp_metering_last_run_timestamp_seconds", "When the last metering run ended.",
          registry=reg).set(time.time())
    if result is not None:
        Gauge("zcp_metering_last_success_timestamp_seconds",
              "When the last successful metering run ended.", registry=reg).set(time.time())
        Gauge("zcp_metering_records_written", "Usage records the last run wrote.",
              registry=reg).set(result.records)
        Gauge("zcp_metering_adjustments_written", "Adjustment lines the last run wrote.",
              registry=reg).set(result.adjustments)
        Gauge("zcp_metering_coverage_warnings", "Records of the last run with time not billed "
              "or no owner.", registry=reg).set(result.coverage_warnings)
        Gauge("zcp_metering_hours_processed", "Hours the last run metered.",
              registry=reg).set(result.hours)
        Gauge("zcp_metering_samples_read", "Raw samples the last run read.",
              registry=reg).set(result.samples)
        Gauge("zcp_metering_watermark_timestamp_seconds",
              "End of the last hour metered by the last run.",
              registry=reg).set(result.end.timestamp())
    return reg


def push_result(url: str | None, result: RunResult | None, error: str,
                duration: float | None = None) -> None:
    """Push to the Pushgateway at ``url`` (nothing without one); a failed push is logged, never
    fatal: the records are already written."""
    if not url:
        return
    reg = registry_for(result, error)
    if duration is not None:
        Gauge("zcp_metering_last_run_duration_seconds", "Duration of the last run.",
              registry=reg).set(duration)
    try:
        # POST replaces only the metrics pushed: a failed run keeps the last success's
        # timestamp (so MeteringJobLate still sees it), a PUT would drop it
        pushadd_to_gateway(url, job=JOB, registry=reg, timeout=10)
    except OSError as exc:
        log.warning("cannot push metering metrics", extra={"url": url, "error": str(exc)})
