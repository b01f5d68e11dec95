"""Reconciliation with CloudStack's listUsageRecords (the CloudStack API test server, response
shapes of GetUsageRecordsCmd/UsageRecordResponse): per account, type and day, tolerances, and
an exception list."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lab.cloudstack_sim import CloudStackSim
from tests.metering import scenario
from tests.metering.scenario import END, T0
from tests.support import ADMIN_KEY, ADMIN_SECRET

pytestmark = pytest.mark.integration
GIB = 2**30


def usage(account: str, usagetype: int, rawusage: str, **extra: object) -> dict[str, object]:
    """One record as listUsageRecords returns it (its dates in CloudStack's own format)."""
    return {
        "account": account,
        "accountid": account,
        "domainid": "d1",
        "zoneid": "z1",
        "usagetype": usagetype,
        "rawusage": rawusage,
        "usage": f"{rawusage} Hrs",
        "description": "",
        "startdate": "2026-11-01'T'00:00:00+00:00",
        "enddate": "2026-11-01'T'23:59:59+00:00",
        **extra,
    }


def test_reconcile_against_listusagerecords(
    cloudstack: CloudStackSim, history_victoria: str, tmp_path: Path
) -> None:
    a, b = scenario.A, scenario.B
    cloudstack.state.objects["listUsageRecords"] += [
        usage(a, 1, "6"),  # RUNNING_VM: vm1's six hours
        usage(a, 2, "10"),  # ALLOCATED_VM: we count vm1 and vm3, 12 h: beyond tolerance
        usage(a, 3, "6"),  # IP_ADDRESS
        usage(a, 4, "244500"),  # NETWORK_BYTES_SENT, bytes
        usage(a, 6, "6", size=20 * GIB),  # VOLUME: CloudStack saw 20 GiB all day (resized)
        usage(b, 1, "3.1666667"),
        usage(b, 2, "3.1666667"),
        usage(b, 5, "336100"),
        usage(b, 6, "6", size=5 * GIB),
        {**usage(a, 1, "24"), "startdate": "2026-10-31'T'00:00:00+00:00"},  # another month
    ]
    (tmp_path / "prices.yaml").write_text(yaml.safe_dump(scenario.PRICES))
    (tmp_path / "exceptions.yaml").write_text(
        yaml.safe_dump(
            [
                {
                    "account": a,
                    "type": "VOLUME",
                    "reason": "CloudStack records the size after a resize for the whole day",
                }
            ]
        )
    )
    cfg = tmp_path / "metering.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "cloudstack": {
                    "url": cloudstack.url,
                    "api_key": ADMIN_KEY,
                    "secret_key": ADMIN_SECRET,
                },
                "metering": {
                    "query_url": history_victoria,
                    "database_url": f"sqlite:///{tmp_path / 'm.db'}",
                    "price_book": str(tmp_path / "prices.yaml"),
                    "settle_seconds": 0,
                },
            }
        )
    )

    def zcp(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "zcp_obs", "--config", str(cfg), "metering", *args],
            capture_output=True,
            text=True,
            timeout=300,
        )

    assert zcp("run", "--from", T0.isoformat(), "--to", END.isoformat()).returncode == 0
    out = zcp("reconcile", "--month", "2026-11", "--exceptions", str(tmp_path / "exceptions.yaml"))
    assert out.returncode == 1, out.stderr  # one difference beyond tolerance
    lines = {tuple(line.split()[:3]): line for line in out.stdout.splitlines()[3:] if line.strip()}
    status = {k: line.split()[5] for k, line in lines.items()}
    assert status == {
        (a, "RUNNING_VM", "2026-11-01"): "ok",
        (a, "ALLOCATED_VM", "2026-11-01"): "differs",
        (a, "IP_ADDRESS", "2026-11-01"): "ok",
        (a, "NETWORK_BYTES_SENT", "2026-11-01"): "ok",
        (a, "VOLUME", "2026-11-01"): "excepted",
        (b, "RUNNING_VM", "2026-11-01"): "ok",
        (b, "ALLOCATED_VM", "2026-11-01"): "ok",
        (b, "NETWORK_BYTES_RECEIVED", "2026-11-01"): "ok",
        (b, "VOLUME", "2026-11-01"): "ok",
    }
    assert out.stdout.startswith("reconciliation 2026-11: 9 rows, 1 beyond tolerance")
    calls = [r for r in cloudstack.requests if r.get("command") == "listUsageRecords"]
    assert calls and calls[0]["startdate"] == "2026-11-01" and calls[0]["enddate"] == "2026-11-30"
