"""What one tenant's stack is made of, as files (pure: no I/O).

Everything is keyed by the account's UUID: directories, ports, unit instances, file names. The
account's name appears only where it is data, JSON- or YAML-encoded by a serializer (the Grafana
org name, the stack's own description), never spliced into a path, an INI value or a command.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tenant_stack.enforce import check_tenant

PROMETHEUS_YML = "prometheus/prometheus.yml"
PROMETHEUS_ENV = "prometheus/prometheus.env"
GATE_TOKEN = "prometheus/gate.token"
GRAFANA_INI = "grafana/grafana.ini"
GRAFANA_PASSWORD = "grafana/admin.password"
GRAFANA_SECRET_KEY = "grafana/secret.key"
DATASOURCE = "grafana/provisioning/datasources/zcp.yaml"
DASHBOARD_PROVIDER = "grafana/provisioning/dashboards/zcp.yaml"
DASHBOARDS = "grafana/dashboards"
SECRETS = (GATE_TOKEN, GRAFANA_PASSWORD, GRAFANA_SECRET_KEY)
DURATION = re.compile(r"^[0-9]+(ms|s|m|h|d|w|y)$")


@dataclass(frozen=True)
class Tier:
    """What a tier of the observability offer gives: how long data is kept, how often the
    tenant's Prometheus federates."""

    name: str
    retention: str = "15d"
    scrape_interval: str = "60s"


@dataclass(frozen=True)
class Tenant:
    """A tenant that should have a stack: its account's UUID, name and tier."""

    id: str
    name: str
    tier: str


@dataclass(frozen=True)
class Ports:
    prometheus: int
    grafana: int


@dataclass(frozen=True)
class Secrets:
    gate_token: str
    grafana_password: str
    grafana_secret_key: str


@dataclass(frozen=True)
class Site:
    """Where stacks live and how they reach the gate (from the config)."""

    gate_url: str
    gate_ca_file: str | None = None
    grafana_tls: bool = False
    bind: str = "127.0.0.1"


@dataclass(frozen=True)
class Stack:
    """One tenant's rendered stack: relative path -> content, and its flags."""

    tenant: Tenant
    files: Mapping[str, str]
    dashboards: Mapping[str, str] = field(default_factory=dict)

    @property
    def version(self) -> str:
        """A digest of everything but the secrets: what `config_version` reports."""
        h = hashlib.sha256()
        for path in sorted(self.files):
            if path not in SECRETS:
                h.update(path.encode() + b"\0" + self.files[path].encode() + b"\0")
        for path in sorted(self.dashboards):
            h.update(path.encode() + b"\0" + self.dashboards[path].encode() + b"\0")
        return h.hexdigest()[:16]


def unit_instance(tenant_id: str) -> str:
    """The systemd instance name (``zcp-obs-tenant-prometheus@<this>.service``)."""
    return check_tenant(tenant_id)


def prometheus_config(tier: Tier, ports: Ports, site: Site, root: Path) -> dict[str, object]:
    federate: dict[str, object] = {
        "job_name": "federate",
        "honor_labels": True,
        "metrics_path": "/federate",
        "scheme": "https" if site.gate_url.startswith("https://") else "http",
        # the gate enforces the tenant; the selector only narrows it to the rule outputs
        "params": {"match[]": ['{__name__=~"tenant:.+"}']},
        "authorization": {"credentials_file": str(root / GATE_TOKEN)},
        "static_configs": [{"targets": [site.gate_url.split("://", 1)[1].rstrip("/")]}],
    }
    if site.gate_ca_file:
        federate["tls_config"] = {"ca_file": site.gate_ca_file}
    return {
        "global": {
            "scrape_interval": tier.scrape_interval,
            "scrape_timeout": "30s"
            if _seconds(tier.scrape_interval) > 30
            else tier.scrape_interval,
            "evaluation_interval": tier.scrape_interval,
        },
        "scrape_configs": [
            federate,
            {
                "job_name": "prometheus",
                "static_configs": [{"targets": [f"127.0.0.1:{ports.prometheus}"]}],
            },
        ],
    }


def _seconds(duration: str) -> float:
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    match = re.match(r"^([0-9]+)([a-z]+)$", duration)
    if not match or match.group(2) not in scale:
        raise ValueError(f"not a duration: {duration!r}")
    return int(match.group(1)) * scale[match.group(2)]


def grafana_ini(ports: Ports, site: Site, root: Path) -> str:
    """A locked-down grafana.ini: no anonymous access, no sign-up, no analytics or external
    snapshots, secrets read from files (``$__file{}``), cookies secure behind TLS."""
    g = root / "grafana"
    sections: dict[str, dict[str, str]] = {
        "paths": {
            "data": str(g / "data"),
            "logs": str(g / "logs"),
            "plugins": str(g / "plugins"),
            "provisioning": str(g / "provisioning"),
        },
        "server": {"http_addr": site.bind, "http_port": str(ports.grafana)},
        "security": {
            "admin_user": "admin",
            "admin_password": f"$__file{{{root / GRAFANA_PASSWORD}}}",
            "secret_key": f"$__file{{{root / GRAFANA_SECRET_KEY}}}",
            "disable_gravatar": "true",
            "cookie_secure": "true" if site.grafana_tls else "false",
            "cookie_samesite": "strict",
            "allow_embedding": "false",
            "disable_initial_admin_creation": "false",
        },
        "users": {
            "allow_sign_up": "false",
            "allow_org_create": "false",
            "auto_assign_org": "true",
            "auto_assign_org_role": "Viewer",
        },
        "auth.anonymous": {"enabled": "false"},
        "auth.basic": {"enabled": "true"},
        "analytics": {
            "reporting_enabled": "false",
            "check_for_updates": "false",
            "check_for_plugin_updates": "false",
            "feedback_links_enabled": "false",
        },
        "snapshots": {"external_enabled": "false"},
        "news": {"news_feed_enabled": "false"},
        "log": {"mode": "console", "level": "info"},
        "log.console": {"format": "json"},
    }
    lines = ["; generated by zcp-obs tenants reconcile: edits are replaced on the next run"]
    for name, keys in sections.items():
        lines.append(f"\n[{name}]")
        lines += [f"{k} = {v}" for k, v in keys.items()]
    return "\n".join(lines) + "\n"


def datasource(ports: Ports) -> str:
    doc = {
        "apiVersion": 1,
        "deleteDatasources": [],
        "datasources": [
            {
                "name": "Prometheus",
                "type": "prometheus",
                "uid": "zcp-tenant-prometheus",
                "access": "proxy",
                "orgId": 1,
                "url": f"http://127.0.0.1:{ports.prometheus}",
                "isDefault": True,
                "editable": False,
                "jsonData": {"httpMethod": "POST", "timeInterval": "60s"},
            }
        ],
    }
    return yaml.safe_dump(doc, sort_keys=False)


def dashboard_provider(root: Path) -> str:
    doc = {
        "apiVersion": 1,
        "providers": [
            {
                "name": "zcp",
                "orgId": 1,
                "folder": "",
                "type": "file",
                "disableDeletion": True,
                "allowUiUpdates": False,
                "updateIntervalSeconds": 60,
                "options": {"path": str(root / DASHBOARDS), "foldersFromFilesStructure": False},
            }
        ],
    }
    return yaml.safe_dump(doc, sort_keys=False)


def render(
    tenant: Tenant,
    tier: Tier,
    ports: Ports,
    secrets: Secrets,
    site: Site,
    root: Path,
    dashboards: Mapping[str, str],
) -> Stack:
    """Every file of ``tenant``'s stack under ``root`` (its own directory)."""
    check_tenant(tenant.id)
    if not DURATION.match(tier.retention) or not DURATION.match(tier.scrape_interval):
        raise ValueError(f"tier {tier.name}: retention and scrape_interval are durations")
    prom = prometheus_config(tier, ports, site, root)
    env = {
        "LISTEN": f"{site.bind}:{ports.prometheus}",
        "RETENTION": tier.retention,
        "DATA": str(root / "prometheus" / "data"),
    }
    files = {
        PROMETHEUS_YML: "# generated by zcp-obs tenants reconcile\n"
        + yaml.safe_dump(prom, sort_keys=False),
        PROMETHEUS_ENV: "".join(f"{k}={v}\n" for k, v in env.items()),
        GATE_TOKEN: secrets.gate_token + "\n",
        GRAFANA_INI: grafana_ini(ports, site, root),
        GRAFANA_PASSWORD: secrets.grafana_password + "\n",
        GRAFANA_SECRET_KEY: secrets.grafana_secret_key + "\n",
        DATASOURCE: datasource(ports),
        DASHBOARD_PROVIDER: dashboard_provider(root),
        "tenant.json": json.dumps(
            {"id": tenant.id, "name": tenant.name, "tier": tier.name}, ensure_ascii=True
        )
        + "\n",
    }
    boards = {f"{DASHBOARDS}/{name}": text for name, text in sorted(dashboards.items())}
    return Stack(tenant, files, boards)


def prometheus_args(binary: str, root: Path, env: Mapping[str, str]) -> list[str]:
    """The tenant Prometheus's command line (the systemd unit has the same, from the .env)."""
    return [
        binary,
        f"--config.file={root / PROMETHEUS_YML}",
        f"--storage.tsdb.path={env['DATA']}",
        f"--storage.tsdb.retention.time={env['RETENTION']}",
        f"--web.listen-address={env['LISTEN']}",
        "--web.enable-lifecycle",
        "--log.format=json",
    ]


def parse_env(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
