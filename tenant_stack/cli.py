"""``zcp-obs tenants ...``: reconcile the tenant stacks, look at them, retire one, run the gate."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
from tabulate import tabulate

from zcp.cliutil import CONTEXT, ZcpGroup, config_of, log_as
from zcp.config import Config
from zcp.errors import ZcpError


@click.group(cls=ZcpGroup, context_settings=CONTEXT)
@click.pass_context
def tenants(ctx: click.Context) -> None:
    """Per-tenant Prometheus + Grafana stacks, kept in step with CloudStack.

    Which accounts get a stack: tenants.accounts, or the CloudStack account detail
    tenants.detail_key naming a tier. Stacks live under tenants.state_dir.
    """
    sub = ctx.invoked_subcommand or "cli"
    log_as(ctx, "zcp-obs-federation-gate" if sub == "federation-proxy" else "zcp-obs-tenants")


def _reconciler(cfg: Config):  # type: ignore[no-untyped-def]
    from tenant_stack.reconcile import Reconciler, desired_tenants

    return Reconciler(cfg.tenants, lambda: desired_tenants(cfg), driver=_driver(cfg))


def _driver(cfg: Config):  # type: ignore[no-untyped-def]
    """The driver tenants.driver names."""
    t = cfg.tenants
    if t.driver == "cloudstack":
        from tenant_stack.cloudstack import CloudStackDriver

        if cfg.cloudstack is None or t.cloudstack is None:
            raise ZcpError(
                "tenants.driver cloudstack needs the cloudstack and tenants.cloudstack sections"
            )
        return CloudStackDriver(t.state_dir, cfg.cloudstack, t.cloudstack)
    return None  # the local driver


@tenants.command("reconcile")
@click.option("--dry-run", is_flag=True, help="Print the plan (files as a diff); change nothing.")
@click.option(
    "--wait",
    type=click.FloatRange(0, 3600),
    default=0.0,
    help="If another run holds the lock, wait this many seconds for it (default: exit).",
)
@click.pass_context
def reconcile(ctx: click.Context, dry_run: bool, wait: float) -> None:
    """Create, update, repair and retire stacks so that they match the accounts.

    Idempotent and crash-safe: safe from cron every minute. Exit code 1 when a step failed
    (the others are still done).
    """
    rec = _reconciler(config_of(ctx))
    outcome = rec.run(dry_run=dry_run, wait=wait)
    changed = [a for a in outcome.actions if a.kind != "keep"]
    for action in changed if dry_run else outcome.actions:
        if action.kind == "keep" and not dry_run:
            continue
        line = f"{action.kind:7} {action.tenant}  {action.name}"
        if action.tenant in outcome.failed:
            line += f"  FAILED: {outcome.failed[action.tenant]}"
        click.echo(line)
        if dry_run:
            for detail in action.detail:
                click.echo(detail)
    kept = sum(a.kind == "keep" for a in outcome.actions)
    verb = "would change" if dry_run else "changed"
    click.echo(
        f"{len(changed)} {verb}, {kept} unchanged, {len(outcome.failed)} failed "
        f"({outcome.seconds:.1f} s)",
        err=True,
    )
    if outcome.failed:
        ctx.exit(1)


@tenants.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """The stacks the reconciler made, with their status and ports."""
    from tenant_stack.state import load

    cfg = config_of(ctx)
    state = load(cfg.tenants.state_dir)
    rows = [
        {
            "tenant": tid,
            "name": r.name,
            "tier": r.tier,
            "status": r.status + (" (held)" if r.held else ""),
            "prometheus": r.prometheus_port,
            "grafana": r.grafana_port,
            "config_version": r.config_version,
            "drift_repaired": r.drift_repaired,
        }
        for tid, r in sorted(state.tenants.items())
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=1))
    elif rows:
        click.echo(tabulate(rows, headers="keys"))
    else:
        click.echo(f"no tenant stacks in {cfg.tenants.state_dir}")


@tenants.command("show")
@click.argument("tenant_id")
@click.pass_context
def show(ctx: click.Context, tenant_id: str) -> None:
    """One stack: its record, files and health (no secret is printed)."""
    from tenant_stack.reconcile import Reconciler
    from tenant_stack.state import load

    cfg = config_of(ctx)
    record = load(cfg.tenants.state_dir).tenants.get(tenant_id)
    if record is None:
        raise ZcpError(f"no stack for tenant {tenant_id!r} (see `zcp-obs tenants list`)")
    rec = Reconciler(cfg.tenants, dict, driver=_driver(cfg))
    url = f"http://{cfg.tenants.local.bind}:{record.prometheus_port}"
    health = rec.driver.health(tenant_id, url)
    root = rec.driver.root(tenant_id)
    doc = {
        "tenant": tenant_id,
        **{k: v for k, v in vars(record).items()},
        "directory": str(root),
        "prometheus_url": url,
        "health": health,
    }
    click.echo(json.dumps(doc, indent=1, default=str))


@tenants.command("retire")
@click.argument("tenant_id")
@click.option("--undo", is_flag=True, help="Let reconcile manage it again.")
@click.option("--wait", type=click.FloatRange(0, 3600), default=0.0)
@click.pass_context
def retire(ctx: click.Context, tenant_id: str, undo: bool, wait: float) -> None:
    """Stop a tenant's stack now and keep it stopped (its data is kept, as on retirement)."""
    from tenant_stack.reconcile import Reconciler
    from tenant_stack.state import load, locked, save

    cfg = config_of(ctx)
    with locked(cfg.tenants.state_dir, wait):
        state = load(cfg.tenants.state_dir)
        record = state.tenants.get(tenant_id)
        if record is None:
            raise ZcpError(f"no stack for tenant {tenant_id!r} (see `zcp-obs tenants list`)")
        if undo:
            record.held = False
        else:
            Reconciler(cfg.tenants, dict, driver=_driver(cfg)).driver.retire(tenant_id)
            record.held, record.status = True, "retired"
            record.retired_at = record.retired_at or time.time()
        save(cfg.tenants.state_dir, state)
    click.echo(f"{tenant_id}: {'managed by reconcile again' if undo else 'retired and held'}")


@tenants.command("federation-proxy")
@click.option("--listen", default=None, help="HOST:PORT (default: tenants.gate.listen).")
@click.option(
    "--upstream", default=None, help="The operator Prometheus (default: tenants.gate.upstream)."
)
@click.option(
    "--tokens-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Tenant id -> token SHA-256 (default: tenants.gate.tokens_file).",
)
@click.option(
    "--web.config.file",
    "web_config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="TLS for the tenants' side, in Prometheus's web config format.",
)
@click.pass_context
def federation_proxy(ctx: click.Context, **flags: object) -> None:
    """The only way tenant stacks reach the operator Prometheus's /federate: a tenant's token
    maps to its id, and every match[] is rewritten to select that tenant's series only."""
    from tenant_stack.gate import Gate
    from zcp.config import with_overrides
    from zcp.httpserver import run_until_signal

    cfg = config_of(ctx)
    gate_cfg = with_overrides(cfg.tenants.gate, "(command line)", **flags)
    gate = Gate(gate_cfg)
    run_until_signal(
        "federation gate",
        gate.start,
        gate.shutdown,
        listen=f"{gate.http.host}:{gate.port}",
        metrics=f"{gate.metrics_http.host}:{gate.metrics_port}",
        upstream=gate_cfg.upstream,
        tenants=len(gate.tokens),
    )
