"""``zcp-obs inventory``: the inventory's own commands (the core's only group)."""

from __future__ import annotations

import json
from typing import Any

import click
from tabulate import tabulate

from zcp.cliutil import CONTEXT, ZcpGroup, config_of
from zcp.errors import ZcpError
from zcp.inventory import make_cache


@click.group(cls=ZcpGroup, context_settings=CONTEXT)
def inventory() -> None:
    """The read-only view of the cloud: tenants, VMs, volumes, NICs, public IPs, pools."""


KINDS = {
    "tenants": ("tenants", ["account_id", "name", "domain_path", "state", "projects"]),
    "vms": (
        "vms",
        [
            "id",
            "instance_name",
            "name",
            "account",
            "project",
            "zone",
            "host",
            "service_offering",
            "vcpus",
            "memory_bytes",
            "state",
        ],
    ),
    "volumes": (
        "volumes",
        ["id", "name", "type", "vm_id", "account", "storage_class", "size_bytes", "rbd_image"],
    ),
    "nics": ("nics", ["id", "mac", "vm_id", "network_name", "ip"]),
    "public-ips": ("public_ips", ["id", "address", "account", "zone", "vm_id", "source_nat"]),
    "pools": ("storage_pools", ["id", "name", "type", "path", "zone", "storage_class"]),
}


def _rows(inv: Any, attr: str, columns: list[str]) -> list[list[Any]]:
    rows = []
    for item in getattr(inv, attr):
        doc = item.model_dump()
        if "account_id" in doc and attr != "tenants":
            tenant = inv.tenant_by_id.get(doc["account_id"])
            doc["account"] = tenant.name if tenant else doc["account_id"]
        if attr == "vms":
            doc["project"] = inv.project_name(item.account_id, item.project_id)
        if attr == "tenants":
            doc["projects"] = ",".join(p["name"] for p in doc["projects"])
        rows.append([doc.get(c, "") for c in columns])
    return rows


@inventory.command("show")
@click.option(
    "--source",
    type=click.Choice(["file", "cloudstack", "service"]),
    default=None,
    help="Where to read from (default: inventory.source in the config).",
)
@click.option(
    "--kind",
    type=click.Choice(["all", *KINDS]),
    default="all",
    show_default=True,
    help="Which records to print.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.pass_context
def inventory_show(ctx: click.Context, source: str | None, kind: str, fmt: str) -> None:
    """Load the inventory once and print it.

    With a cache_file configured and the source down, the last good copy is printed with a
    warning of its age.
    """
    cfg = config_of(ctx)
    cache = make_cache(cfg, source)
    try:
        inv = cache.refresh()
    except ZcpError as exc:
        if not cache.wait_loaded(0):
            raise
        inv = cache.current()
        click.echo(
            f"warning: {exc}; showing the cached copy from {inv.fetched_at} "
            f"({cache.age_seconds():.0f}s old)",
            err=True,
        )
    if fmt == "json":
        doc = json.loads(inv.model_dump_json())
        if kind != "all":
            doc = {KINDS[kind][0]: doc[KINDS[kind][0]]}
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(
        f"# inventory from {inv.source}, fetched {inv.fetched_at:%Y-%m-%d %H:%M:%S} UTC"
        if inv.fetched_at
        else f"# inventory from {inv.source}"
    )
    for name, (attr, columns) in KINDS.items():
        if kind not in ("all", name):
            continue
        click.echo(f"\n## {name} ({len(getattr(inv, attr))})")
        click.echo(tabulate(_rows(inv, attr, columns), headers=columns, tablefmt="simple"))
