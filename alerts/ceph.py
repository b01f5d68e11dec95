"""Storage alerts: upstream ceph-mixin rules reused where they fit, plus what they lack.

The detection logic (expression, ``for:``, severity, summary) of the upstream rules comes from
the file Debian ships in ``ceph-prometheus-alerts`` (Ceph 16.2's ceph-mixin), read at build time
and checked against the copy pinned here, so an upstream change shows up as a failing build
rather than as a silently different page. Their descriptions are replaced by ones that name the
affected object with ``$labels`` only (upstream's run PromQL inside templates) and every rule
gets ``area`` and a runbook. Missing upstream: near-full per *storage class* (fast/flow/bulk, via
``zcp_storage_pool_info`` from the inventory), an OSD left out, and RGW being down (our Ceph
exporter's ``ceph_exporter_source_up{source="rgw"}``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from alerts.model import Alert, Case, Group
from zcp.errors import ConfigError

UPSTREAM = Path("/etc/prometheus/ceph/ceph_default_alerts.yml")

CEPH = {"job": "ceph", "instance": "mgr:9283"}
POOL = {**CEPH, "pool_id": "2", "name": "rbd-fast"}

# name -> (expected upstream expr, for, severity; our description; test cases)
REUSED: dict[str, tuple[str, str, str, str, tuple[Case, ...]]] = {
    "CephHealthError": (
        "ceph_health_status == 2",
        "5m",
        "critical",
        "Ceph cluster {{ $labels.instance }} has been HEALTH_ERR for 5 minutes: check "
        "`ceph health detail`. Its own warnings are held back while this fires.",
        (
            Case({'ceph_health_status{job="ceph",instance="mgr:9283"}': "2x10"}, ({**CEPH},)),
            Case({'ceph_health_status{job="ceph",instance="mgr:9283"}': "1x10"}),
        ),
    ),
    "CephHealthWarning": (
        "ceph_health_status == 1",
        "15m",
        "warning",
        "Ceph cluster {{ $labels.instance }} has been HEALTH_WARN for 15 minutes: check "
        "`ceph health detail`.",
        (
            Case({'ceph_health_status{job="ceph",instance="mgr:9283"}': "1x20"}, ({**CEPH},)),
            Case({'ceph_health_status{job="ceph",instance="mgr:9283"}': "0x20"}),
        ),
    ),
    "CephOSDDown": (
        'ceph_health_detail{name="OSD_DOWN"} == 1',
        "5m",
        "warning",
        "One or more OSDs of {{ $labels.instance }} are down (OSD_DOWN): `ceph osd tree down`.",
        (
            Case(
                {
                    'ceph_health_detail{job="ceph",instance="mgr:9283",name="OSD_DOWN",'
                    'severity="HEALTH_WARN"}': "1x10"
                },
                ({**CEPH, "name": "OSD_DOWN", "severity": "warning"},),
            ),
            Case(
                {
                    'ceph_health_detail{job="ceph",instance="mgr:9283",name="OSD_DOWN",'
                    'severity="HEALTH_WARN"}': "0x10"
                }
            ),
        ),
    ),
    "CephOSDHostDown": (
        'ceph_health_detail{name="OSD_HOST_DOWN"} == 1',
        "5m",
        "warning",
        "All OSDs of a storage host of {{ $labels.instance }} are down (OSD_HOST_DOWN).",
        (
            Case(
                {'ceph_health_detail{job="ceph",instance="mgr:9283",name="OSD_HOST_DOWN"}': "1x10"},
                ({**CEPH, "name": "OSD_HOST_DOWN"},),
            ),
            Case(
                {'ceph_health_detail{job="ceph",instance="mgr:9283",name="OSD_HOST_DOWN"}': "0x10"}
            ),
        ),
    ),
    "CephPGsInactive": (
        "ceph_pool_metadata * on(pool_id,instance) group_left() (ceph_pg_total - ceph_pg_active) "
        "> 0",
        "5m",
        "critical",
        "Pool {{ $labels.name }} has inactive placement groups: I/O to it blocks.",
        (
            Case(
                {
                    'ceph_pool_metadata{job="ceph",instance="mgr:9283",pool_id="2",name="rbd-fast"}': "1x10",
                    'ceph_pg_total{job="ceph",instance="mgr:9283",pool_id="2"}': "32x10",
                    'ceph_pg_active{job="ceph",instance="mgr:9283",pool_id="2"}': "30x10",
                },
                ({**POOL},),
            ),
            Case(
                {
                    'ceph_pool_metadata{job="ceph",instance="mgr:9283",pool_id="2",name="rbd-fast"}': "1x10",
                    'ceph_pg_total{job="ceph",instance="mgr:9283",pool_id="2"}': "32x10",
                    'ceph_pg_active{job="ceph",instance="mgr:9283",pool_id="2"}': "32x10",
                }
            ),
        ),
    ),
    "CephPGsUnclean": (
        "ceph_pool_metadata * on(pool_id,instance) group_left() (ceph_pg_total - ceph_pg_clean) "
        "> 0",
        "15m",
        "warning",
        "Pool {{ $labels.name }} has placement groups that are not clean (degraded, "
        "recovering or misplaced) for 15 minutes.",
        (
            Case(
                {
                    'ceph_pool_metadata{job="ceph",instance="mgr:9283",pool_id="2",name="rbd-fast"}': "1x20",
                    'ceph_pg_total{job="ceph",instance="mgr:9283",pool_id="2"}': "32x20",
                    'ceph_pg_clean{job="ceph",instance="mgr:9283",pool_id="2"}': "31x20",
                },
                ({**POOL},),
            ),
            Case(
                {
                    'ceph_pool_metadata{job="ceph",instance="mgr:9283",pool_id="2",name="rbd-fast"}': "1x20",
                    'ceph_pg_total{job="ceph",instance="mgr:9283",pool_id="2"}': "32x20",
                    'ceph_pg_clean{job="ceph",instance="mgr:9283",pool_id="2"}': "32x20",
                }
            ),
        ),
    ),
    "CephMgrPrometheusModuleInactive": (
        'up{job="ceph"} == 0',
        "1m",
        "critical",
        "The mgr prometheus module at {{ $labels.instance }} is unreachable: no Ceph metrics, "
        "no Ceph alerts.",
        (
            Case({'up{job="ceph",instance="mgr:9283"}': "0x10"}, ({**CEPH},)),
            Case({'up{job="ceph",instance="mgr:9283"}': "1x10"}),
        ),
    ),
    "CephPoolFull": (
        'ceph_health_detail{name="POOL_FULL"} > 0',
        "1m",
        "critical",
        "A pool of {{ $labels.instance }} is full (POOL_FULL): writes to it are blocked.",
        (
            Case(
                {'ceph_health_detail{job="ceph",instance="mgr:9283",name="POOL_FULL"}': "1x10"},
                ({**CEPH, "name": "POOL_FULL"},),
            ),
            Case({'ceph_health_detail{job="ceph",instance="mgr:9283",name="POOL_FULL"}': "0x10"}),
        ),
    ),
}

CLASS_POOL = {
    "pool": "ceph-fast",
    "ceph_pool": "rbd-fast",
    "storage_class": "fast",
    "zone": "zone1",
    "job": "zcp-inventory",
    "instance": "inv:9180",
}
RGW = {"job": "zcp-ceph", "instance": "stor1:9284", "source": "rgw"}

OURS = (
    Alert(
        "CephPoolNearFullByClass",
        "max by (name, pool_id) (ceph_pool_percent_used * on (pool_id, instance) "
        "group_left (name) ceph_pool_metadata) * on (name) group_left (storage_class, zone) "
        'label_replace(zcp_storage_pool_info, "name", "$1", "ceph_pool", "(.+)") > 0.80',
        "15m",
        "warning",
        "storage",
        "{{ $labels.storage_class }} pool {{ $labels.name }} is over 80 % full",
        "Ceph pool {{ $labels.name }} (storage class {{ $labels.storage_class }}, zone "
        "{{ $labels.zone }}) is over 80 % of what it can hold: add capacity to the class or "
        "stop placing volumes on it.",
        (
            Case(
                {
                    'ceph_pool_percent_used{job="ceph",instance="mgr:9283",pool_id="2"}': "0.85x20",
                    'ceph_pool_metadata{job="ceph",instance="mgr:9283",pool_id="2",name="rbd-fast"}': "1x20",
                    'zcp_storage_pool_info{job="zcp-inventory",instance="inv:9180",pool="ceph-fast",'
                    'ceph_pool="rbd-fast",storage_class="fast",zone="zone1"}': "1x20",
                },
                ({"name": "rbd-fast", "pool_id": "2", "storage_class": "fast", "zone": "zone1"},),
            ),
            Case(
                {
                    'ceph_pool_percent_used{job="ceph",instance="mgr:9283",pool_id="2"}': "0.5x20",
                    'ceph_pool_metadata{job="ceph",instance="mgr:9283",pool_id="2",name="rbd-fast"}': "1x20",
                    'zcp_storage_pool_info{job="zcp-inventory",instance="inv:9180",pool="ceph-fast",'
                    'ceph_pool="rbd-fast",storage_class="fast",zone="zone1"}': "1x20",
                }
            ),
        ),
    ),
    Alert(
        "CephOSDOut",
        "ceph_osd_in == 0",
        "30m",
        "warning",
        "storage",
        "OSD {{ $labels.ceph_daemon }} is out of the cluster",
        "{{ $labels.ceph_daemon }} of {{ $labels.instance }} has been out for 30 minutes: its "
        "data was moved to the other OSDs of its class, which now have less headroom.",
        (
            Case(
                {'ceph_osd_in{job="ceph",instance="mgr:9283",ceph_daemon="osd.3"}': "0x40"},
                ({**CEPH, "ceph_daemon": "osd.3"},),
            ),
            Case({'ceph_osd_in{job="ceph",instance="mgr:9283",ceph_daemon="osd.3"}': "1x40"}),
        ),
    ),
    Alert(
        "RGWDown",
        'ceph_exporter_source_up{source="rgw"} == 0',
        "3m",
        "critical",
        "storage",
        "Object storage (RGW) does not answer",
        "The Ceph exporter at {{ $labels.instance }} gets no answer from the RGW admin API: "
        "customers' S3 requests are probably failing too.",
        (
            Case(
                {
                    'ceph_exporter_source_up{job="zcp-ceph",instance="stor1:9284",source="rgw"}': "0x10"
                },
                ({**RGW},),
            ),
            Case(
                {
                    'ceph_exporter_source_up{job="zcp-ceph",instance="stor1:9284",source="rgw"}': "1x10"
                }
            ),
        ),
    ),
    Alert(
        "CephExporterSourceFailing",
        'ceph_exporter_source_up{source=~"rbd|df|cephfs|placement"} == 0',
        "10m",
        "warning",
        "storage",
        "The Ceph exporter's {{ $labels.source }} source fails",
        "The Ceph exporter at {{ $labels.instance }} has not refreshed its {{ $labels.source }} "
        "source for 10 minutes: per-volume and per-tenant storage figures are stale (RBD "
        "bytes feed billing).",
        (
            Case(
                {
                    'ceph_exporter_source_up{job="zcp-ceph",instance="stor1:9284",source="rbd"}': "0x20"
                },
                ({**RGW, "source": "rbd"},),
            ),
            Case(
                {
                    'ceph_exporter_source_up{job="zcp-ceph",instance="stor1:9284",source="rbd"}': "1x20"
                }
            ),
            Case(
                {
                    'ceph_exporter_source_up{job="zcp-ceph",instance="stor1:9284",source="rgw"}': "0x20"
                }
            ),
        ),
    ),
)


def _upstream_rules(path: Path) -> dict[str, dict[str, Any]]:
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(
            f"cannot read the upstream Ceph alerts {path}: {exc.strerror} "
            "(apt-get install ceph-prometheus-alerts)"
        ) from None
    return {
        r["alert"]: r for g in doc.get("groups", []) for r in g.get("rules", []) if "alert" in r
    }


def ceph_alerts(path: Path = UPSTREAM) -> Group:
    """The storage group: reused upstream rules (checked against the pinned copy) + ours."""
    upstream = _upstream_rules(path)
    alerts = []
    for name, (expr, for_, severity, description, cases) in REUSED.items():
        rule = upstream.get(name)
        if rule is None:
            raise ConfigError(f"upstream Ceph rule {name} is missing from {path}")
        got = (
            " ".join(str(rule["expr"]).split()),
            str(rule.get("for", "0s")),
            rule["labels"]["severity"],
        )
        if got != (" ".join(expr.split()), for_, severity):
            raise ConfigError(
                f"upstream Ceph rule {name} changed in {path}: {got}; review it "
                "and update alerts/ceph.py"
            )
        alerts.append(
            Alert(
                name,
                got[0],
                for_,
                severity,  # type: ignore[arg-type]
                "storage",
                str(rule["annotations"]["summary"]),
                description,
                cases,
                upstream=f"ceph-mixin ({path})",
            )
        )
    return Group("storage", (*alerts, *OURS))
