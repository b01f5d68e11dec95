"""The reconciler (``zcp-obs tenants reconcile``): desired stacks (accounts with the
observability tier) against what exists, one plan, then each step applied and recorded.

Steps, per tenant: ``create`` (no stack yet), ``update`` (what it should be changed: tier, ports,
dashboards), ``repair`` (nothing should have changed, yet its files differ or its Prometheus is
down: drift, counted), ``keep``, ``retire`` (the account lost the tier: stopped, data kept),
``purge`` (retired longer than ``retired_retention_days``: deleted), ``hold`` (retired by an
operator: left alone). Safe from cron every minute: a run that changes nothing writes nothing
but its health metrics, and a run killed anywhere converges on the next one.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, push_to_gateway, write_to_textfile

from tenant_stack.gate import read_tokens, token_digest, write_tokens
from tenant_stack.local import LocalDriver
from tenant_stack.render import (
    GATE_TOKEN,
    GRAFANA_PASSWORD,
    GRAFANA_SECRET_KEY,
    Ports,
    Secrets,
    Site,
    Stack,
    Tenant,
    Tier,
    render,
)
from tenant_stack.state import Record, State, load, locked, save
from zcp.config import Config, TenantsConfig
from zcp.errors import ZcpError

log = logging.getLogger(__name__)
DAY = 86400.0


@dataclass
class Action:
    kind: str
    tenant: str
    name: str
    detail: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    actions: list[Action]
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def accounts_from_cloudstack(cfg: Config) -> dict[str, Tenant]:
    """Accounts whose detail ``detail_key`` names a tier (``updateAccount accountdetails``)."""
    from zcp.inventory.cloudstack import CloudStackSource

    if cfg.cloudstack is None:
        raise ZcpError(
            "tenants: no tenants.accounts list and no cloudstack section to read accounts from"
        )
    source = CloudStackSource(cfg.cloudstack)
    key = cfg.tenants.detail_key
    out = {}
    for acc in source.list_all("listAccounts", listall=True):
        details = acc.get("accountdetails") or {}
        tier = details.get(key) if isinstance(details, dict) else None
        if tier in cfg.tenants.tiers:
            out[str(acc["id"])] = Tenant(str(acc["id"]), str(acc.get("name", "")), str(tier))
        elif tier:
            log.warning(
                "account names an unknown tier; no stack",
                extra={"account_id": acc["id"], "tier": str(tier)[:64]},
            )
    return out


def desired_tenants(cfg: Config) -> dict[str, Tenant]:
    t = cfg.tenants
    if t.accounts is None:
        return accounts_from_cloudstack(cfg)
    from zcp.inventory import inventory_loader

    try:
        names = {x.account_id: x.name for x in inventory_loader(cfg)().tenants}
    except ZcpError as exc:
        log.warning("account names unavailable; using ids", extra={"error": str(exc)})
        names = {}
    return {a: Tenant(a, names.get(a, a), tier) for a, tier in t.accounts.items()}


class Reconciler:
    """One reconcile run's logic over a driver (``local`` here; see :mod:`tenant_stack`)."""

    def __init__(
        self,
        cfg: TenantsConfig,
        desired: Callable[[], Mapping[str, Tenant]],
        driver: LocalDriver | None = None,  # the cloudstack driver is one too
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.desired = desired
        self.driver = driver or LocalDriver(cfg.state_dir, cfg.local)
        self.clock = clock
        self._health: dict[str, dict[str, bool | None]] = {}  # per run: tenant -> health
        self.site = Site(
            cfg.gate_address(), cfg.gate_ca_file, grafana_tls=cfg.grafana_tls, bind=cfg.local.bind
        )

    # -- inputs ---------------------------------------------------------------------------------
    def dashboards(self) -> dict[str, str]:
        folder = self.cfg.dashboards_dir
        if folder is None:
            return {}
        try:
            return {p.name: p.read_text() for p in sorted(folder.glob("*.json"))}
        except OSError as exc:
            raise ZcpError(f"tenants.dashboards_dir {folder}: {exc.strerror}") from None

    def _secret(self, root: Path, rel: str) -> str:
        try:
            value = (root / rel).read_text().strip()
        except OSError:
            value = ""
        return value or secrets.token_urlsafe(32)

    def _ports(self, state: State) -> Ports:
        used = state.ports_in_use()
        base = self.cfg.local.port_base
        n = 0
        while base + 2 * n in used or base + 2 * n + 1 in used:
            n += 1
        return Ports(base + 2 * n, base + 2 * n + 1)

    def stack(self, tenant: Tenant, record: Record, boards: Mapping[str, str]) -> Stack:
        root = self.driver.root(tenant.id)
        tier_cfg = self.cfg.tiers[tenant.tier]
        tier = Tier(tenant.tier, tier_cfg.retention, tier_cfg.scrape_interval)
        secret = Secrets(
            self._secret(root, GATE_TOKEN),
            self._secret(root, GRAFANA_PASSWORD),
            self._secret(root, GRAFANA_SECRET_KEY),
        )
        ports = Ports(record.prometheus_port, record.grafana_port)
        return render(tenant, tier, ports, secret, self.site, root, boards)

    def _url(self, record: Record) -> str:
        return f"http://{self.site.bind}:{record.prometheus_port}"

    # -- the plan -------------------------------------------------------------------------------
    def plan(self, state: State) -> tuple[list[Action], dict[str, Stack]]:
        want = self.desired()
        boards = self.dashboards()
        self._health = {}
        actions: list[Action] = []
        stacks: dict[str, Stack] = {}
        now = self.clock()
        for tid, tenant in sorted(want.items()):
            record = state.tenants.get(tid)
            if record is not None and record.held:
                actions.append(Action("hold", tid, tenant.name, ["retired by an operator"]))
                continue
            if record is None:
                ports = self._ports(state)
                record = Record(tenant.name, tenant.tier, ports.prometheus, ports.grafana)
                state.tenants[tid] = record  # reserves the ports for the next new tenant
                kind = "create"
            elif record.status == "retired":
                kind = "create"
            else:
                kind = "keep"
            record.name, record.tier = tenant.name, tenant.tier
            stack = self.stack(tenant, record, boards)
            stacks[tid] = stack
            diff = self.driver.differences(stack)
            self._health[tid] = self.driver.health(tid, self._url(record))
            up = self._health[tid]["prometheus"]
            if kind == "keep" and (diff or not up):
                kind = "repair" if stack.version == record.config_version else "update"
                if not up:
                    diff = [*diff, "  prometheus: not running -> start"]
            actions.append(Action(kind, tid, tenant.name, diff))
        for tid, record in sorted(state.tenants.items()):
            if tid in want:
                continue
            if record.status == "active":
                actions.append(Action("retire", tid, record.name, ["stop; data kept"]))
            elif self._expired(record, now):
                actions.append(Action("purge", tid, record.name, ["delete files and data"]))
        return actions, stacks

    def _expired(self, record: Record, now: float) -> bool:
        days = self.cfg.retired_retention_days
        if days is None or record.retired_at is None:
            return False
        return now - record.retired_at >= days * DAY

    # -- the run --------------------------------------------------------------------------------
    def run(self, dry_run: bool = False, wait: float = 0.0) -> Outcome:
        started = time.monotonic()
        with locked(self.cfg.state_dir, wait):
            state = load(self.cfg.state_dir)
            actions, stacks = self.plan(state)
            outcome = Outcome(actions)
            if dry_run:
                outcome.seconds = time.monotonic() - started
                return outcome
            for action in actions:
                try:
                    self._apply(action, state, stacks)
                except ZcpError as exc:
                    outcome.failed[action.tenant] = str(exc)
                    log.error(
                        "tenant stack step failed",
                        extra={"tenant": action.tenant, "step": action.kind, "error": str(exc)},
                    )
                save(self.cfg.state_dir, state)  # after every step: a crash loses at most one
            self._write_tokens(state)
            state.last_run = self.clock()
            state.last_run_ok = not outcome.failed
            save(self.cfg.state_dir, state)
            outcome.seconds = time.monotonic() - started
            self._export(state, outcome)
        return outcome

    def _apply(self, action: Action, state: State, stacks: dict[str, Stack]) -> None:
        record = state.tenants[action.tenant]
        now = self.clock()
        if action.kind in ("create", "update", "repair"):
            stack = stacks[action.tenant]
            change = self.driver.apply(stack)
            self._health.pop(action.tenant, None)  # changed: asked again for the metrics
            record.status, record.retired_at = "active", None
            record.config_version = stack.version
            if action.kind == "repair":
                record.drift_repaired += 1
            log.info(
                f"tenant stack {action.kind}",
                extra={
                    "tenant": action.tenant,
                    "files": len(change.files),
                    "started": change.started,
                    "reloaded": change.reloaded,
                    "config_version": stack.version,
                },
            )
        elif action.kind == "retire":
            self.driver.retire(action.tenant)
            record.status, record.retired_at = "retired", now
            log.info("tenant stack retired; data kept", extra={"tenant": action.tenant})
        elif action.kind == "purge":
            self.driver.purge(action.tenant)
            del state.tenants[action.tenant]
            log.info("retired tenant stack purged", extra={"tenant": action.tenant})
            return
        record.last_reconcile = now

    def _write_tokens(self, state: State) -> None:
        """The gate's tokens file: the digests of the active stacks' tokens (rewritten only
        when they change, so the gate reloads only then)."""
        digests = {}
        for tid, record in state.tenants.items():
            if record.status != "active":
                continue
            try:
                token = (self.driver.root(tid) / GATE_TOKEN).read_text().strip()
            except OSError:
                continue
            digests[tid] = token_digest(token)
        path = self.cfg.gate.tokens_file
        try:
            current: dict[str, str] | None = read_tokens(path)[0] if path.exists() else None
        except ZcpError:
            current = None  # unreadable: written anew
        if current != digests:
            write_tokens(path, digests)

    # -- health ---------------------------------------------------------------------------------
    def _export(self, state: State, outcome: Outcome) -> None:
        if self.cfg.metrics_textfile is None and self.cfg.pushgateway_url is None:
            return
        reg = CollectorRegistry()
        up = Gauge(
            "zcp_tenant_stack_up",
            "Whether a tenant's component answers.",
            ["tenant", "component"],
            registry=reg,
        )
        info = Gauge(
            "zcp_tenant_stack_info",
            "A tenant stack's tier, status and config version.",
            ["tenant", "tier", "status", "config_version"],
            registry=reg,
        )
        drift = Counter(
            "zcp_tenant_stack_drift_repaired",
            "Drift repairs of a tenant's stack.",
            ["tenant"],
            registry=reg,
        )
        last = Gauge(
            "zcp_tenant_stack_last_reconcile_timestamp_seconds",
            "When a tenant's stack was last changed or checked.",
            ["tenant"],
            registry=reg,
        )
        for tid, record in state.tenants.items():
            info.labels(tid, record.tier, record.status, record.config_version).set(1)
            drift.labels(tid).inc(record.drift_repaired)
            last.labels(tid).set(record.last_reconcile)
            if record.status == "active":
                # what the plan saw, for stacks this run left alone (asked once per run)
                health = self._health.get(tid) or self.driver.health(tid, self._url(record))
                for component, ok in health.items():
                    if ok is not None:
                        up.labels(tid, component).set(1 if ok else 0)
        Gauge(
            "zcp_tenant_reconcile_last_run_timestamp_seconds",
            "When the last reconcile ended.",
            registry=reg,
        ).set(state.last_run)
        Gauge(
            "zcp_tenant_reconcile_last_run_success",
            "Whether every step of it worked.",
            registry=reg,
        ).set(1 if state.last_run_ok else 0)
        Gauge(
            "zcp_tenant_reconcile_duration_seconds",
            "How long the last reconcile took.",
            registry=reg,
        ).set(outcome.seconds)
        if self.cfg.metrics_textfile is not None:
            write_to_textfile(str(self.cfg.metrics_textfile), reg)
        if self.cfg.pushgateway_url is not None:
            try:
                push_to_gateway(self.cfg.pushgateway_url, job="zcp-tenants", registry=reg)
            except OSError as exc:
                log.warning("cannot push stack health", extra={"error": str(exc)})
