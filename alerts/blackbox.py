"""The S3 probe: the blackbox exporter's ``s3`` module and the Prometheus job that uses it.

"Object storage speaks S3 to any S3 tool" is checked the way such a tool starts: an anonymous
``GET /`` (ListBuckets). A healthy radosgw answers 200 with an XML ``ListAllMyBucketsResult``
(empty for the anonymous user); a stopped radosgw, a proxy's error page or any other HTTP server
answering 200 fails the probe, which the ``probe_success{job="s3-probe"}`` alert watches.
"""

from __future__ import annotations

from typing import Any

MODULE = "s3"
JOB = "s3-probe"

# The root element of an S3 ListBuckets answer; a 200 without it is not S3.
LIST_BUCKETS_BODY = r"<ListAllMyBucketsResult[\s>]"


def _duration(seconds: float) -> str:
    """``seconds`` as a Prometheus duration string (``5s``, ``2500ms``)."""
    millis = round(seconds * 1000)
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def blackbox_config(timeout_seconds: float) -> dict[str, Any]:
    """The blackbox exporter's configuration (``blackbox.yml``): the one module ``s3``, an
    anonymous ``GET /`` that must answer 200 with a ``ListAllMyBucketsResult`` within
    ``timeout_seconds`` (> 0)."""
    return {
        "modules": {
            MODULE: {
                "prober": "http",
                "timeout": _duration(timeout_seconds),
                "http": {
                    "method": "GET",
                    "valid_status_codes": [200],
                    "fail_if_body_not_matches_regexp": [LIST_BUCKETS_BODY],
                    # S3 tools do not follow a redirect for ListBuckets: neither does the probe
                    "follow_redirects": False,
                    # endpoints may be http (a lab, an internal zone) or https
                    "fail_if_not_ssl": False,
                    # most endpoints have an IPv4 address; an IPv6-only one still answers
                    "preferred_ip_protocol": "ip4",
                    "ip_protocol_fallback": True,
                },
            }
        }
    }


def scrape_job(exporter: str, endpoints: dict[str, str]) -> dict[str, Any]:
    """The operator Prometheus's scrape job ``s3-probe``: the blackbox exporter at ``exporter``
    (host:port) probes each S3 endpoint of ``endpoints`` (zone -> URL) with the ``s3`` module;
    each series carries ``instance`` = the endpoint URL and its ``zone``."""
    return {
        "job_name": JOB,
        "metrics_path": "/probe",
        "params": {"module": [MODULE]},
        "static_configs": [
            {"targets": [url], "labels": {"zone": zone}} for zone, url in sorted(endpoints.items())
        ],
        # the standard blackbox relabelling: the target becomes the probe's ?target= and the
        # instance label, and Prometheus scrapes the exporter instead
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": ["__param_target"], "target_label": "instance"},
            {"target_label": "__address__", "replacement": exporter},
        ],
    }
