"""The one YAML configuration file, validated into typed objects at start-up.

Secrets (CloudStack keys, Loki and Grafana passwords) are written either inline or, better, as
``{env: NAME}`` or ``{file: /path}``; they are held as ``SecretStr`` and never printed or logged.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from zcp.errors import ConfigError

if TYPE_CHECKING:
    from zcp.httpserver import Limits

CONFIG_ENV = "ZCP_OBS_CONFIG"
StorageClass = Literal["fast", "flow", "bulk"]


def _resolve_secret(value: Any) -> Any:
    """Turn ``{env: NAME}`` / ``{file: PATH}`` / a plain string into the secret's value."""
    if isinstance(value, SecretStr) or value is None:
        return value
    if isinstance(value, str):
        if not value:
            raise ValueError("must not be empty")
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((kind, ref),) = value.items()
        if kind == "env":
            if not isinstance(ref, str) or ref not in os.environ:
                raise ValueError(f"environment variable {ref!r} is not set")
            secret = os.environ[ref]
        elif kind == "file":
            try:
                secret = Path(str(ref)).read_text().strip()
            except OSError as exc:
                raise ValueError(f"cannot read secret file {ref!r}: {exc.strerror}") from None
        else:
            raise ValueError("a secret is a string, {env: NAME} or {file: PATH}")
        if not secret:
            raise ValueError(f"secret from {kind} {ref!r} is empty")
        return secret
    raise ValueError("a secret is a string, {env: NAME} or {file: PATH}")


Secret = Annotated[SecretStr, BeforeValidator(_resolve_secret)]


def _require_http(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CloudStackConfig(_Model):
    """How to reach the CloudStack management server's API as an admin."""

    url: str = Field(description="API endpoint, e.g. https://cloud.example.com/client/api")
    api_key: Secret
    secret_key: Secret
    timeout_seconds: int = Field(10, ge=1)
    verify_tls: bool = True
    page_size: int = Field(500, ge=1, le=5000)
    signature_expiration_seconds: int = Field(600, ge=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _require_http(value)


def _listen(value: str) -> str:
    """``HOST:PORT`` (``[v6]:PORT``, or ``:PORT`` for every address)."""
    _host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT")
    return value


Listen = Annotated[str, AfterValidator(_listen)]


def split_listen(value: str) -> tuple[str, int]:
    """A valid ``HOST:PORT`` -> (host, port); an empty host means every address."""
    host, _, port = _listen(value).rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


class InventoryServiceSource(_Model):
    """Where a hypervisor (or Ceph) exporter takes its inventory from: the region's inventory
    service (``zcp-obs exporter inventory``) instead of CloudStack itself."""

    url: str = Field(description="base URL of the inventory service, e.g. http://inv1:9180")
    host: str | None = Field(
        None, description="ask only for this hypervisor's VMs (with their volumes and NICs)"
    )
    timeout_seconds: float = Field(10.0, gt=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _require_http(value).rstrip("/")


class InventoryConfig(_Model):
    """Where the inventory comes from and how it is cached."""

    source: Literal["file", "cloudstack", "service"] = "file"
    file: Path | None = Field(None, description="YAML inventory; default: the embedded demo cloud")
    service: InventoryServiceSource | None = Field(
        None, description="the inventory service, for source: service"
    )
    refresh_interval_seconds: float = Field(300.0, gt=0)
    cache_file: Path | None = Field(None, description="last good copy kept across restarts")
    storage_classes: dict[str, StorageClass] = Field(
        default_factory=dict,
        description="storage pool name or tag -> storage class (fast, flow, bulk)",
    )


class LokiConfig(_Model):
    """Loki push endpoint for log shipping."""

    url: str
    labels: dict[str, str] = Field(default_factory=dict)
    username: str | None = None
    password: Secret | None = None
    queue_size: int = Field(10_000, ge=1)
    timeout_seconds: float = Field(5.0, gt=0)

    @field_validator("url")
    @classmethod
    def _push_url(cls, value: str) -> str:
        value = _require_http(value)
        if not value.rstrip("/").endswith("/loki/api/v1/push"):
            value = value.rstrip("/") + "/loki/api/v1/push"
        return value


class LoggingConfig(_Model):
    """Log level and destinations (stderr always; Loki when configured)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "json"
    loki: LokiConfig | None = None


class WebhookReceiver(_Model):
    """A generic webhook (Alertmanager's webhook payload, version 4)."""

    url: Secret  # webhook URLs often embed a token

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: SecretStr) -> SecretStr:
        _require_http(value.get_secret_value())
        return value


class EmailReceiver(_Model):
    """Tickets by email through an SMTP smarthost."""

    to: str
    sender: str = Field(description="From: address")
    smarthost: str = Field(description="host:port of the SMTP relay")
    username: str | None = None
    password: Secret | None = None
    require_tls: bool = True


class PagerDutyReceiver(_Model):
    """Pages through PagerDuty's Events API v2 (or a compatible service at ``url``)."""

    routing_key: Secret
    url: str = "https://events.pagerduty.com/v2/enqueue"

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _require_http(value)


DeviceClass = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]
#: CRUSH bucket types from the smallest up, as in Ceph's default map
FAILURE_DOMAINS = ("osd", "host", "chassis", "rack", "row", "pdu", "pod", "room", "datacenter")


DEFAULT_MEDIA: dict[StorageClass, str] = {"fast": "nvme", "flow": "ssd", "bulk": "hdd"}


class PromisesConfig(_Model):
    """What the cloud promises its customers, as the alerts check it. The defaults are a
    production region's; a lab or the demo (one Ceph node, one OSD) sets its own."""

    production_offerings: str = Field(
        ".*",
        description="regex on the service offering name of production plans (no overcommit)",
    )
    cpu_overcommit_max: float = Field(
        1.0, gt=0, description="running VMs' vCPUs / host cores allowed on a production host"
    )
    memory_overcommit_max: float = Field(
        1.0, gt=0, description="running VMs' memory / host memory allowed on a production host"
    )
    steal_max: float = Field(
        0.05, gt=0, lt=1, description="share of a production VM's runnable vCPU time spent waiting"
    )
    ceph_pool_size: int = Field(3, ge=1, description="replicas every pool keeps")
    ceph_pool_min_size: int = Field(2, ge=1, description="replicas a pool needs to take writes")
    ceph_failure_domain: str = Field(
        "host", description="the smallest CRUSH failure domain a pool's rule may use"
    )
    ceph_min_hosts: int = Field(
        2, ge=1, description="distinct hosts every placement group's copies must span"
    )
    ceph_self_heal_minutes: int = Field(
        60, ge=1, description="how long PGs may stay undersized or degraded while Ceph heals"
    )
    storage_media: dict[StorageClass, DeviceClass] = Field(
        default_factory=lambda: dict(DEFAULT_MEDIA),
        description="storage class -> the CRUSH device class of the OSDs it must live on",
    )
    overlay_mtu: int = Field(1500, ge=576, le=9000, description="tenant interfaces' MTU")
    tunnel_overhead: int = Field(50, ge=0, description="bytes VXLAN adds to the underlay")
    s3_endpoints: dict[str, str] = Field(
        default_factory=dict, description="zone -> the RGW S3 endpoint to probe (blackbox)"
    )
    blackbox_exporter: str = Field(
        "127.0.0.1:9115", description="host:port of the blackbox exporter that probes S3"
    )
    s3_probe_timeout_seconds: float = Field(5.0, gt=0, le=60)

    @field_validator("production_offerings")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @field_validator("ceph_failure_domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        if value not in FAILURE_DOMAINS:
            raise ValueError(f"must be one of {', '.join(FAILURE_DOMAINS)}")
        return value

    @field_validator("s3_endpoints")
    @classmethod
    def _urls(cls, value: dict[str, str]) -> dict[str, str]:
        return {zone: _require_http(url) for zone, url in value.items()}

    @model_validator(mode="after")
    def _sizes(self) -> PromisesConfig:
        if self.ceph_pool_min_size > self.ceph_pool_size:
            raise ValueError("ceph_pool_min_size must not exceed ceph_pool_size")
        return self

    @property
    def domains_too_small(self) -> list[str]:
        """Failure domains below the promised one."""
        return list(FAILURE_DOMAINS[: FAILURE_DOMAINS.index(self.ceph_failure_domain)])


class AlertingConfig(_Model):
    """Where alerts go and where their runbooks live."""

    promises: PromisesConfig = Field(default_factory=lambda: PromisesConfig())

    runbook_base_url: str = Field(
        "https://git.example.com/zcp-observability/blob/main/alerts/runbooks",
        description="runbook_url = <this>/<area>.md#<alertname lower-cased>",
    )
    webhook: WebhookReceiver | None = None
    email: EmailReceiver | None = None
    pagerduty: PagerDutyReceiver | None = None
    group_wait_seconds: float = Field(30.0, gt=0)
    group_interval_seconds: float = Field(300.0, gt=0)
    repeat_interval_seconds: float = Field(4 * 3600.0, gt=0)
    resolve_timeout_seconds: float = Field(300.0, gt=0)

    @field_validator("runbook_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _require_http(value).rstrip("/")


class CephConfig(_Model):
    """How the Ceph exporter reaches the cluster and maps it to storage classes and tenants."""

    conf: Path = Path("/etc/ceph/ceph.conf")
    id: str = Field("admin", description="cephx client id (client.<id>), read-only caps do")
    keyring: Path | None = None
    pool_classes: dict[str, StorageClass] = Field(
        default_factory=dict,
        description="Ceph pool -> storage class, for pools the inventory does not map",
    )
    rgw_uid_pattern: str = Field(
        "(?P<account_id>.+)",
        description="regex on the RGW uid; group account_id is the CloudStack account uuid",
    )
    rgw_enabled: bool = Field(True, description="false: the cluster has no RGW, skip it")
    rgw_endpoint: str | None = Field(None, description="http(s)://host:port of radosgw")
    cephfs_group_pattern: str = Field(
        "(?P<account_id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})",
        description="regex on a CephFS subvolume group; group account_id is the account uuid",
    )
    rbd_interval_seconds: float = Field(300.0, gt=0)
    rgw_interval_seconds: float = Field(300.0, gt=0)
    df_interval_seconds: float = Field(60.0, gt=0)
    placement_interval_seconds: float = Field(
        300.0, gt=0, description="ceph pg dump pgs_brief (PGs' acting sets): big on large clusters"
    )
    workers: int = Field(2, ge=1, le=16, description="rbd du commands run at once")
    command_timeout_seconds: float = Field(120.0, gt=0)

    @field_validator("rgw_uid_pattern", "cephfs_group_pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        if "account_id" not in compiled.groupindex:
            raise ValueError("needs a named group (?P<account_id>...)")
        return value

    @field_validator("rgw_endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return _require_http(value).rstrip("/") if value else value


Deadline = Annotated[
    float,
    Field(
        ge=0.1,
        le=120,
        description="longest a scrape may take (Prometheus's "
        "X-Prometheus-Scrape-Timeout-Seconds lowers it)",
    ),
]


class ServedConfig(_Model):
    """The HTTP server's settings, shared by every exporter (:mod:`zcp.httpserver`)."""

    web_config_file: Path | None = Field(
        None,
        description="Prometheus's web configuration file (TLS, basic auth), as node_exporter's "
        "--web.config.file; reloaded on change",
    )
    max_requests: int = Field(
        40, ge=1, le=10000, description="requests handled at once; beyond them: 503"
    )
    max_connections: int = Field(
        512, ge=1, le=65536, description="open connections; beyond them the oldest idle one goes"
    )
    idle_timeout_seconds: float = Field(
        120.0, gt=0, le=3600, description="a keep-alive connection idle this long is closed"
    )
    read_timeout_seconds: float = Field(
        10.0, gt=0, le=600, description="a request (and a TLS handshake) must arrive within it"
    )

    def limits(self) -> Limits:
        from zcp.httpserver import Limits

        return Limits(
            max_requests=self.max_requests,
            max_connections=self.max_connections,
            idle_timeout=self.idle_timeout_seconds,
            read_timeout=self.read_timeout_seconds,
        )


LibvirtGroup = Literal["state", "cpu", "balloon", "vcpu", "interface", "block"]


class LibvirtExporterConfig(ServedConfig):
    """``zcp-obs exporter libvirt`` (one per hypervisor)."""

    uri: str = "qemu:///system"
    listen: Listen = "127.0.0.1:9177"
    deadline_seconds: Deadline = 8.0
    hostname: str | None = Field(
        None,
        description="this hypervisor's name in zcp_vm_info of VMs the inventory does not "
        "know (default: the system host name)",
    )
    groups: tuple[LibvirtGroup, ...] = ("state", "cpu", "balloon", "vcpu", "interface", "block")
    chunks: int = Field(4, ge=1, le=64, description="concurrent bulk stats calls per scrape")
    connections: int = Field(2, ge=1, le=8, description="libvirt connections they use")
    procfs: bool | None = Field(
        None, description="CPU/vCPU/RSS from /proc (default: on for a local qemu:/// URI)"
    )


class OvsExporterConfig(ServedConfig):
    """``zcp-obs exporter ovs`` (one per hypervisor running Open vSwitch)."""

    db: str = "unix:/var/run/openvswitch/db.sock"
    rundir: Path = Path("/var/run/openvswitch")
    vswitchd_ctl: str | None = Field(
        None, description="ovs-vswitchd's unixctl socket (default: from the pid file in rundir)"
    )
    listen: Listen = "127.0.0.1:9475"
    deadline_seconds: Deadline = 8.0
    call_timeout_seconds: float = Field(
        2.0, gt=0, le=60, description="deadline of each unixctl call"
    )

    @field_validator("db")
    @classmethod
    def _remote(cls, value: str) -> str:
        if not value.startswith(("unix:", "tcp:", "ssl:")):
            raise ValueError(f"{value!r} is not an OVSDB remote (unix:PATH, tcp:IP:PORT)")
        return value


class CephExporterConfig(CephConfig, ServedConfig):
    """``zcp-obs exporter ceph`` (one per Ceph cluster; the mgr module has port 9283)."""

    listen: Listen = "127.0.0.1:9284"
    deadline_seconds: Deadline = 8.0


class InventoryExporterConfig(ServedConfig):
    """``zcp-obs exporter inventory``: the inventory service (one per region or zone)."""

    listen: Listen = "127.0.0.1:9180"
    deadline_seconds: Deadline = 8.0


class ExportersConfig(_Model):
    """One section per exporter; command-line flags override them."""

    libvirt: LibvirtExporterConfig = Field(default_factory=lambda: LibvirtExporterConfig())
    ovs: OvsExporterConfig = Field(default_factory=lambda: OvsExporterConfig())
    ceph: CephExporterConfig = Field(default_factory=lambda: CephExporterConfig())
    inventory: InventoryExporterConfig = Field(default_factory=lambda: InventoryExporterConfig())


class MeteringConfig(_Model):
    """The metering job (``zcp-obs metering``): where samples and records live, the gap rules."""

    query_url: str = Field(
        "http://127.0.0.1:9090",
        description=(
            "Prometheus-compatible query API holding the raw samples: the long-term store "
            "(VictoriaMetrics) for a month and more"
        ),
    )
    database_url: Secret = Field(
        SecretStr("sqlite:////var/lib/zcp-obs/metering.db"),
        description="SQLAlchemy URL (sqlite:///PATH, postgresql+psycopg://user:pw@host/db)",
    )
    price_book: Path | None = Field(None, description="YAML price book; default: embedded")
    settle_seconds: float = Field(
        900.0, ge=0, description="a period is metered only this long after it ends"
    )
    max_gap_seconds: float = Field(
        300.0,
        gt=0,
        description=(
            "samples further apart are not bridged: that time is not billed, the record flagged"
        ),
    )
    max_outage_seconds: float = Field(
        3600.0,
        gt=0,
        description=(
            "samples further apart than max_gap and at most this are a gap (not billed, every "
            "hour it touches flagged); further apart is a series ending and a new one starting "
            "(a VM stopped, then started): not billed, not flagged"
        ),
    )
    scrape_interval_seconds: float = Field(
        60.0,
        gt=0,
        description=("how long a sample holds when no next sample follows within max_gap"),
    )
    chunk_hours: int = Field(24, ge=1, le=168, description="hours fetched and written at once")
    backfill_hours: int = Field(
        24, ge=1, description="first run without a watermark: how far back to start"
    )
    query_timeout_seconds: float = Field(120.0, gt=0)
    lock_ttl_seconds: float = Field(
        120.0,
        gt=0,
        description=(
            "the run lease on databases without advisory locks expires this long after a crash"
        ),
    )
    optional_meters: tuple[str, ...] = Field((), description="e.g. disk.read_requests")
    pushgateway_url: str | None = Field(None, description="push the job's own metrics here")

    @field_validator("query_url", "pushgateway_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return _require_http(value).rstrip("/") if value else value

    @model_validator(mode="after")
    def _gap_rules(self) -> MeteringConfig:
        if not (self.scrape_interval_seconds <= self.max_gap_seconds <= self.max_outage_seconds):
            raise ValueError(
                "needs scrape_interval_seconds <= max_gap_seconds <= max_outage_seconds"
            )
        return self


class GrafanaConfig(_Model):
    """A Grafana to upload the dashboards to (``zcp-obs dashboards upload``)."""

    url: str = Field(description="Grafana's base URL, e.g. https://grafana.example.com")
    token: Secret = Field(description="a service-account token (Editor in the target org)")
    org_id: int | None = Field(
        None, ge=1, description="X-Grafana-Org-Id (a tenant's org); default: the token's org"
    )
    folder_uid: str = Field("zcp", min_length=1, max_length=40)
    folder_title: str = Field("ZCP", min_length=1)
    timeout_seconds: float = Field(10.0, gt=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _require_http(value).rstrip("/")


class DashboardsConfig(_Model):
    """The dashboards (``zcp-obs dashboards``)."""

    grafana: GrafanaConfig | None = None


class GateConfig(ServedConfig):
    """``zcp-obs tenants federation-proxy``: the only way tenant stacks reach the operator
    Prometheus's ``/federate``."""

    listen: Listen = "127.0.0.1:9480"
    metrics_listen: Listen = Field(
        "127.0.0.1:9481", description="the gate's own /metrics (kept off the tenants' port)"
    )
    upstream: str = Field("http://127.0.0.1:9090", description="the operator Prometheus")
    upstream_timeout_seconds: float = Field(30.0, gt=0, le=600)
    tokens_file: Path = Field(
        Path("/var/lib/zcp-obs/tenants/gate-tokens.yaml"),
        description="tenant id -> SHA-256 of its bearer token (written by the reconciler, 0600)",
    )

    @field_validator("upstream")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _require_http(value).rstrip("/")


PromDuration = Annotated[
    str, Field(pattern=r"^[0-9]+(ms|s|m|h|d|w|y)$", description="a Prometheus duration")
]


class TierConfig(_Model):
    """What a tier of the observability offer gives a tenant's stack."""

    retention: PromDuration = "15d"
    scrape_interval: PromDuration = "60s"


class LocalDriverConfig(_Model):
    """The ``local`` driver: each tenant's Prometheus (and Grafana, where installed) on this
    host, as processes it starts itself (``direct``) or as systemd units from deploy/."""

    process: Literal["direct", "systemd"] = "direct"
    prometheus_binary: str = "prometheus"
    grafana_binary: str = "grafana-server"
    port_base: int = Field(
        19100, ge=1024, le=65000, description="tenant n gets ports port_base+2n and +2n+1"
    )
    bind: str = "127.0.0.1"
    start_timeout_seconds: float = Field(60.0, gt=0, le=600)


class CloudStackDriverConfig(_Model):
    """The ``cloudstack`` driver: one VM per tenant in a service account, configured by
    cloud-init user data (the API credentials are the top-level ``cloudstack`` section's)."""

    zone_id: str
    template_id: str = Field(description="a Debian 12 template with cloud-init")
    service_offering_id: str
    network_ids: tuple[str, ...] = ()
    account: str | None = Field(None, description="the service account owning the VMs")
    domain_id: str | None = None
    userdata_max_length: int = Field(
        32768, ge=1024, le=1048576, description="CloudStack's vm.userdata.max.length"
    )
    job_timeout_seconds: float = Field(600.0, gt=0, le=7200)
    poll_interval_seconds: float = Field(2.0, gt=0, le=60)
    tag_key: str = "zcp-tenant"
    grafana_apt_source: str | None = Field(
        "deb [signed-by=/etc/apt/keyrings/grafana.asc] https://apt.grafana.com stable main",
        description="where the VM installs Grafana from (Debian has no grafana package)",
    )


class TenantsConfig(_Model):
    """Tenant stacks (``zcp-obs tenants``): which accounts get one, what each tier gives, where
    stacks live, and the federation gate they all go through."""

    state_dir: Path = Path("/var/lib/zcp-obs/tenants")
    driver: Literal["local", "cloudstack"] = "local"
    accounts: dict[str, str] | None = Field(
        None,
        description="account UUID -> tier; without it, CloudStack accounts whose detail "
        "detail_key names a tier (updateAccount accountdetails)",
    )
    detail_key: str = "zcp.observability"
    tiers: dict[str, TierConfig] = Field(default_factory=lambda: {"standard": TierConfig()})
    retired_retention_days: float | None = Field(
        30.0,
        ge=0,
        description="a retired tenant's data is deleted this long after (null: kept forever)",
    )
    dashboards_dir: Path | None = Field(
        None, description="the built tenant dashboards (`zcp-obs dashboards build`: tenant/)"
    )
    gate_url: str | None = Field(
        None, description="how tenant stacks reach the gate (default: http://<gate.listen>)"
    )
    gate_ca_file: str | None = None
    grafana_tls: bool = Field(
        False, description="tenants reach their Grafana over TLS (a proxy): secure cookies"
    )
    metrics_textfile: Path | None = Field(
        None, description="stack health for node_exporter's textfile collector"
    )
    pushgateway_url: str | None = None
    local: LocalDriverConfig = Field(default_factory=lambda: LocalDriverConfig())
    cloudstack: CloudStackDriverConfig | None = None
    gate: GateConfig = Field(default_factory=lambda: GateConfig())

    @model_validator(mode="after")
    def _tiers_known(self) -> TenantsConfig:
        if not self.tiers:
            raise ValueError("tiers: at least one")
        if self.driver == "cloudstack" and self.cloudstack is None:
            raise ValueError("driver cloudstack needs a tenants.cloudstack section")
        for account, tier in (self.accounts or {}).items():
            if tier not in self.tiers:
                raise ValueError(f"accounts: {account} has tier {tier!r}, not one of tiers")
        return self

    def gate_address(self) -> str:
        return self.gate_url or f"http://{self.gate.listen}"


class Config(_Model):
    """The whole configuration file."""

    cloudstack: CloudStackConfig | None = None
    inventory: InventoryConfig = Field(default_factory=lambda: InventoryConfig())
    logging: LoggingConfig = Field(default_factory=lambda: LoggingConfig())
    alerting: AlertingConfig = Field(default_factory=lambda: AlertingConfig())
    exporters: ExportersConfig = Field(default_factory=lambda: ExportersConfig())
    metering: MeteringConfig = Field(default_factory=lambda: MeteringConfig())
    dashboards: DashboardsConfig = Field(default_factory=lambda: DashboardsConfig())
    tenants: TenantsConfig = Field(default_factory=lambda: TenantsConfig())


M = TypeVar("M", bound=BaseModel)


def with_overrides(section: M, where: str, **values: Any) -> M:
    """``section`` with the values that are not None (command-line flags) put over it,
    validated like the file; an invalid value is a ConfigError naming ``where`` and the key."""
    given = {k: v for k, v in values.items() if v is not None}
    if not given:
        return section
    try:
        return type(section).model_validate({**section.model_dump(), **given})
    except ValidationError as exc:
        raise ConfigError(_format_error(where, exc)) from None


def _format_error(source: str, exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif msg.startswith("Value error, "):
            msg = msg.removeprefix("Value error, ")
        problems.append(f"{key}: {msg}")
    return f"invalid config {source}: " + "; ".join(problems)


def parse_config(data: Any, source: str = "<config>") -> Config:
    """Validate already-parsed YAML data into a :class:`Config`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {source}: the top level must be a mapping")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(source, exc)) from None


def load_config(path: Path | str | None = None) -> Config:
    """Load the config from ``path``, else ``$ZCP_OBS_CONFIG``, else the built-in defaults."""
    if path is None:
        path = os.environ.get(CONFIG_ENV) or None
    if path is None:
        return Config()
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(f"invalid config {path}:{where}: {problem}") from None
    return parse_config(data, str(path))
