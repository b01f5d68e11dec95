"""The Alertmanager configuration: routing by area and severity, grouping, inhibition.

Routing: every alert carries ``area`` (compute, storage, network, platform) and ``severity``.
Critical pages (PagerDuty-compatible service) and also goes to the webhook; warning opens a
ticket (email) and goes to the webhook; info goes to the webhook only. Each area has its own
receivers so a PagerDuty service/email queue can tell the areas apart. Secrets (routing key,
SMTP password, webhook URL) come from the configuration, never from this code.
"""

from __future__ import annotations

from typing import Any

from zcp.config import AlertingConfig

AREAS = ("compute", "storage", "network", "platform")
SEVERITIES = ("critical", "warning", "info")
GROUP_BY = {
    "compute": ["alertname", "zone", "host"],
    "network": ["alertname", "zone", "host"],
    "storage": ["alertname", "zone", "instance"],
    "platform": ["alertname", "instance"],
}

INHIBIT = [
    # a hypervisor that is down silences its VMs, exporters and OVS
    {
        "source_matchers": ['alertname="HypervisorHostDown"'],
        "target_matchers": ['alertname!="HypervisorHostDown"', 'area=~"compute|network"'],
        "equal": ["host"],
    },
    # no libvirt view of a host: its VM alerts would be guesses
    {
        "source_matchers": ['alertname=~"LibvirtExporterDown|LibvirtUnhealthy"'],
        "target_matchers": ['alertname=~"VM.+|LibvirtStatsIncomplete"'],
        "equal": ["host"],
    },
    # HEALTH_ERR silences the cluster's own warnings (one cluster per zone)
    {
        "source_matchers": ['alertname="CephHealthError"'],
        "target_matchers": ['area="storage"', 'severity="warning"'],
        "equal": ["zone"],
    },
    # an exporter that is down makes its "down" family of alerts redundant
    {
        "source_matchers": ['alertname="OVSDown"'],
        "target_matchers": ['alertname=~"VXLANTunnelDown|OVSPortErrors"'],
        "equal": ["host"],
    },
    # a stale inventory service makes every exporter it feeds stale too: one alert, not N
    {
        "source_matchers": ['alertname="InventoryStale"'],
        "target_matchers": ['alertname="ExporterInventoryStale"'],
        "equal": ["zone"],
    },
]


def _seconds(value: float) -> str:
    """A duration in Alertmanager's format, exact to the millisecond (1.5 -> ``1s500ms``;
    truncating to whole seconds would turn 1.5 s into 1 s)."""
    ms = round(value * 1000)
    s, ms = divmod(ms, 1000)
    text = (f"{s}s" if s else "") + (f"{ms}ms" if ms else "")
    return text or "0s"


def _receiver(area: str, severity: str, cfg: AlertingConfig) -> dict[str, Any]:
    recv: dict[str, Any] = {"name": f"{area}-{severity}"}
    if cfg.webhook is not None:
        recv["webhook_configs"] = [
            {"url": cfg.webhook.url.get_secret_value(), "send_resolved": True}
        ]
    if severity == "critical" and cfg.pagerduty is not None:
        recv["pagerduty_configs"] = [
            {
                "routing_key": cfg.pagerduty.routing_key.get_secret_value(),
                "url": cfg.pagerduty.url,
                "send_resolved": True,
                "description": "{{ .CommonLabels.alertname }}: {{ .CommonAnnotations.summary }}",
                "details": {
                    "area": area,
                    "runbook": "{{ .CommonAnnotations.runbook_url }}",
                    "firing": '{{ template "pagerduty.default.instances" .Alerts.Firing }}',
                },
            }
        ]
    if severity == "warning" and cfg.email is not None:
        email: dict[str, Any] = {
            "to": cfg.email.to,
            "from": cfg.email.sender,
            "smarthost": cfg.email.smarthost,
            "require_tls": cfg.email.require_tls,
            "send_resolved": True,
            "headers": {
                "Subject": f"[{area}] "
                "{{ .CommonLabels.alertname }} "
                "({{ .Alerts.Firing | len }} firing)"
            },
        }
        if cfg.email.username:
            email["auth_username"] = cfg.email.username
        if cfg.email.password is not None:
            email["auth_password"] = cfg.email.password.get_secret_value()
        recv["email_configs"] = [email]
    return recv


def alertmanager_config(cfg: AlertingConfig) -> dict[str, Any]:
    """The whole ``alertmanager.yml`` as a dict (contains secrets: write it 0600)."""
    routes = []
    for area in AREAS:
        routes.append(
            {
                "matchers": [f'area="{area}"'],
                "receiver": f"{area}-warning",
                "group_by": GROUP_BY[area],
                "routes": [
                    {"matchers": [f'severity="{sev}"'], "receiver": f"{area}-{sev}"}
                    for sev in SEVERITIES
                ],
            }
        )
    return {
        "global": {"resolve_timeout": _seconds(cfg.resolve_timeout_seconds)},
        "route": {
            # anything without a known area is a platform problem (a rule missing its labels)
            "receiver": "platform-warning",
            "group_by": ["alertname", "zone", "host"],
            "group_wait": _seconds(cfg.group_wait_seconds),
            "group_interval": _seconds(cfg.group_interval_seconds),
            "repeat_interval": _seconds(cfg.repeat_interval_seconds),
            # a rule missing its area still pages when it is critical
            "routes": [
                *routes,
                {"matchers": ['severity="critical"'], "receiver": "platform-critical"},
            ],
        },
        "inhibit_rules": INHIBIT,
        "receivers": [_receiver(a, s, cfg) for a in AREAS for s in SEVERITIES],
    }


def route_tests() -> list[tuple[dict[str, str], str]]:
    """``amtool config routes test`` cases: labels -> the one receiver they must reach."""
    cases = [
        ({"alertname": "X", "area": a, "severity": s, "host": "kvm1"}, f"{a}-{s}")
        for a in AREAS
        for s in SEVERITIES
    ]
    cases += [
        ({"alertname": "X", "area": "compute"}, "compute-warning"),  # no severity
        ({"alertname": "X", "severity": "critical"}, "platform-critical"),  # no area
        ({"alertname": "X", "area": "marketing", "severity": "critical"}, "platform-critical"),
        ({"alertname": "X", "area": "marketing", "severity": "warning"}, "platform-warning"),
    ]
    return cases
