"""``zcp-obs``: the one command-line entry point of zcp-observability."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from tabulate import tabulate

from zcp.config import CONFIG_ENV, Config, load_config
from zcp.errors import ZcpError
from zcp.logs import setup_logging


class _Group(click.Group):
    """A group that turns expected failures into one ``Error: ...`` line and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand; a :class:`ZcpError` becomes a one-line error."""
        try:
            return super().invoke(ctx)
        except ZcpError as exc:
            raise click.ClickException(str(exc)) from None


def _config(ctx: click.Context) -> Config:
    cfg = ctx.ensure_object(dict)["config"]
    assert isinstance(cfg, Config)
    return cfg


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              envvar=CONFIG_ENV, help=f"YAML config file (default: ${CONFIG_ENV}, else built-in "
                                      "defaults: the embedded demo inventory, logs to stderr).")
@click.option("--log-format", type=click.Choice(["json", "text"]), default=None,
              help="Override logging.format from the config.")
@click.version_option(package_name="zcp-observability")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, log_format: str | None) -> None:
    """Observability and metering for a CloudStack + KVM + Ceph + Open vSwitch cloud.

    Exporters, alert rules, dashboards, metering and per-tenant monitoring stacks, all driven by
    one YAML config. Run `zcp-obs demo` to bring up a local demo on real daemons.
    """
    try:
        cfg = load_config(config_path)
    except ZcpError as exc:
        raise click.ClickException(str(exc)) from None
    if log_format is not None:
        cfg = cfg.model_copy(update={"logging": cfg.logging.model_copy(
            update={"format": log_format})})
    ctx.ensure_object(dict)["config"] = cfg
    setup_logging(f"zcp-obs-{ctx.invoked_subcommand or 'cli'}", cfg.logging)


# -- inventory ----------------------------------------------------------------------------------
@cli.group(cls=_Group)
def inventory() -> None:
    """The read-only view of the cloud: tenants, VMs, volumes, NICs, public IPs, pools."""


KINDS = {
    "tenants": ("tenants", ["account_id", "name", "domain_path", "state", "projects"]),
    "vms": ("vms", ["id", "instance_name", "name", "account", "project", "zone", "host",
                    "service_offering", "vcpus", "memory_bytes", "state"]),
    "volumes": ("volumes", ["id", "name", "type", "vm_id", "account", "storage_class",
                            "size_bytes", "rbd_image"]),
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
@click.option("--source", type=click.Choice(["file", "cloudstack"]), default=None,
              help="Where to read from (default: inventory.source in the config).")
@click.option("--kind", type=click.Choice(["all", *KINDS]), default="all", show_default=True,
              help="Which records to print.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@click.pass_context
def inventory_show(ctx: click.Context, source: str | None, kind: str, fmt: str) -> None:
    """Load the inventory once and print it.

    With a cache_file configured and the source down, the last good copy is printed with a
    warning of its age.
    """
    from zcp.inventory import make_cache

    cfg = _config(ctx)
    cache = make_cache(cfg, source)
    try:
        inv = cache.refresh()
    except ZcpError as exc:
        if not cache.wait_loaded(0):
            raise
        inv = cache.current()
        click.echo(f"warning: {exc}; showing the cached copy from {inv.fetched_at} "
                   f"({cache.age_seconds():.0f}s old)", err=True)
    if fmt == "json":
        doc = json.loads(inv.model_dump_json())
        if kind != "all":
            doc = {KINDS[kind][0]: doc[KINDS[kind][0]]}
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(f"# inventory from {inv.source}, fetched {inv.fetched_at:%Y-%m-%d %H:%M:%S} UTC"
               if inv.fetched_at else f"# inventory from {inv.source}")
    for name, (attr, columns) in KINDS.items():
        if kind not in ("all", name):
            continue
        click.echo(f"\n## {name} ({len(getattr(inv, attr))})")
        click.echo(tabulate(_rows(inv, attr, columns), headers=columns, tablefmt="simple"))


# -- groups that later parts fill ---------------------------------------------------------------
@cli.group(cls=_Group)
def exporter() -> None:
    """Run a Prometheus exporter (libvirt/KVM, Open vSwitch, Ceph)."""


def parse_listen(value: str, default_port: int) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``HOST`` -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep:
        return value, default_port
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise click.BadParameter(f"{value!r} is not HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


@exporter.command("libvirt")
@click.option("--uri", default="qemu:///system", show_default=True, help="libvirt URI.")
@click.option("--listen", default="127.0.0.1:9177", show_default=True,
              help="HOST:PORT to serve /metrics on.")
@click.option("--deadline", type=click.FloatRange(0.1, 120), default=8.0, show_default=True,
              help="Longest a scrape waits for libvirt (Prometheus's "
                   "X-Prometheus-Scrape-Timeout-Seconds lowers it).")
@click.option("--hostname", default=None,
              help="This hypervisor's name in zcp_vm_info of VMs the inventory does not know "
                   "(default: the system host name).")
@click.option("--groups", default=",".join(["state", "cpu", "balloon", "vcpu", "interface",
                                             "block"]), show_default=True,
              help="Comma-separated libvirt stat groups to collect.")
@click.option("--chunks", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Split the domains into this many chunks, each fetched by one "
                   "concurrent bulk stats call (1: a single getAllDomainStats call).")
@click.option("--connections", type=click.IntRange(1, 8), default=2, show_default=True,
              help="libvirt connections the concurrent bulk calls are spread over.")
@click.option("--procfs/--no-procfs", default=None,
              help="Read CPU, vCPU and RSS figures of the guests' QEMU processes from /proc "
                   "(as libvirt does) instead of libvirt's cpu/vcpu groups, which cost QEMU "
                   "monitor round-trips. Default: on for a local qemu:/// URI.")
@click.pass_context
def exporter_libvirt(ctx: click.Context, uri: str, listen: str, deadline: float,
                     hostname: str | None, groups: str, chunks: int, connections: int,
                     procfs: bool | None) -> None:
    """Export per-VM CPU, vCPU, memory, disk and vNIC counters from libvirt/KVM.

    Bulk stats calls per scrape (state, disks, vNICs; guest memory where the guest reports
    it), CPU/vCPU/RSS from /proc for local guests; domain XML cached and refreshed on libvirt
    events; CloudStack identity from the inventory in zcp_vm_info/zcp_volume_info/zcp_nic_info.
    """
    from exporters.libvirt import DEFAULT_PORT, GROUP_FLAGS, run

    wanted = tuple(g.strip() for g in groups.split(",") if g.strip())
    unknown = sorted(set(wanted) - set(GROUP_FLAGS))
    if unknown:
        raise click.BadParameter(f"unknown group(s) {', '.join(unknown)}; choose from "
                                 f"{', '.join(GROUP_FLAGS)}", param_hint="--groups")
    host, port = parse_listen(listen, DEFAULT_PORT)
    run(_config(ctx), uri, host, port, deadline, hostname, wanted, chunks, connections,
        procfs)


@exporter.command("ovs")
@click.option("--db", default="unix:/var/run/openvswitch/db.sock", show_default=True,
              help="OVSDB remote (unix:PATH or tcp:IP:PORT).")
@click.option("--rundir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("/var/run/openvswitch"), show_default=True,
              help="Where ovs-vswitchd keeps its pid file and control socket.")
@click.option("--vswitchd-ctl", default=None,
              help="ovs-vswitchd's unixctl socket (default: from the pid file in --rundir).")
@click.option("--listen", default="127.0.0.1:9475", show_default=True,
              help="HOST:PORT to serve /metrics on.")
@click.option("--deadline", type=click.FloatRange(0.1, 120), default=8.0, show_default=True,
              help="Longest a scrape waits (Prometheus's X-Prometheus-Scrape-Timeout-Seconds "
                   "lowers it); each unixctl call has at most 2 s.")
@click.pass_context
def exporter_ovs(ctx: click.Context, db: str, rundir: Path, vswitchd_ctl: str | None,
                 listen: str, deadline: float) -> None:
    """Export Open vSwitch interfaces (per-VM ports with CloudStack identity), tunnels,
    bridges, datapath, coverage and memory of ovs-vswitchd."""
    from exporters.ovs import DEFAULT_PORT, run

    if not db.startswith(("unix:", "tcp:", "ssl:")):
        raise click.BadParameter(f"{db!r} is not an OVSDB remote (unix:PATH, tcp:IP:PORT)",
                                 param_hint="--db")
    host, port = parse_listen(listen, DEFAULT_PORT)
    run(_config(ctx), db, rundir, vswitchd_ctl, host, port, deadline)


@exporter.command("ceph")
@click.option("--conf", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="ceph.conf (default: ceph.conf in the config, else /etc/ceph/ceph.conf).")
@click.option("--id", "client_id", default=None,
              help="cephx client id, as in client.<id> (default: ceph.id in the config, admin).")
@click.option("--listen", default="127.0.0.1:9284", show_default=True,
              help="HOST:PORT to serve /metrics on (the mgr prometheus module has 9283).")
@click.option("--deadline", type=click.FloatRange(0.1, 120), default=8.0, show_default=True,
              help="Longest a scrape may take (it only reads the last refreshed results).")
@click.pass_context
def exporter_ceph(ctx: click.Context, conf: Path | None, client_id: str | None, listen: str,
                  deadline: float) -> None:
    """Export per-tenant Ceph usage by storage class: RBD images (provisioned/used bytes,
    snapshots) with CloudStack volume ids, RGW users and buckets (bytes, objects, requests),
    refreshed in the background on their own schedules; storage class per pool."""
    from exporters.ceph import DEFAULT_PORT, run

    cfg = _config(ctx)
    update: dict[str, Any] = {}
    if conf is not None:
        update["conf"] = conf
    if client_id is not None:
        update["id"] = client_id
    if update:
        cfg = cfg.model_copy(update={"ceph": cfg.ceph.model_copy(update=update)})
    if not cfg.ceph.conf.exists():
        raise ZcpError(f"{cfg.ceph.conf} not found (--conf, or ceph.conf in the config)")
    host, port = parse_listen(listen, DEFAULT_PORT)
    run(cfg, host, port, deadline)


@cli.group(cls=_Group)
def alerts() -> None:
    """Build and check the Prometheus rules and the Alertmanager configuration."""


@alerts.command("build")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory for rules/zcp.rules.yml, rules/zcp.tests.yml, alertmanager.yml.")
@click.pass_context
def alerts_build(ctx: click.Context, out: Path) -> None:
    """Write the rule file, its promtool tests and alertmanager.yml (receivers and their
    secrets from the config's `alerting` section; the file is written 0600)."""
    from alerts.build import build

    cfg = _config(ctx).alerting
    built = build(out, cfg)
    if cfg.webhook is None and cfg.email is None and cfg.pagerduty is None:
        click.echo("warning: no receivers configured (alerting.webhook/email/pagerduty): "
                   "alerts will be routed but not delivered", err=True)
    for path in (built.rules, built.tests, built.alertmanager, built.route_tests):
        click.echo(str(path))


@alerts.command("check")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The directory `alerts build` wrote.")
@click.pass_context
def alerts_check(ctx: click.Context, out: Path) -> None:
    """promtool check rules, promtool test rules, amtool check-config and every routing test."""
    from alerts.build import check

    done = check(out, progress=lambda label: click.echo(f"... {label}", err=True))
    click.echo(f"ok: {len(done)} checks passed")


@cli.group(cls=_Group)
def dashboards() -> None:
    """Build the Grafana dashboards (grafanalib) and upload them through Grafana's HTTP API."""


@cli.group(cls=_Group)
def metering() -> None:
    """Turn usage metrics into priced, idempotent billing records and finance reports."""


@cli.group(cls=_Group)
def tenants() -> None:
    """Reconcile the per-tenant Prometheus + Grafana stacks with CloudStack's accounts."""


@cli.command()
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the demo keeps its daemons' data and logs (default: a temp dir).")
@click.option("--duration", type=float, default=None,
              help="Stop after this many seconds (default: run until Ctrl-C).")
@click.option("--libvirt/--no-libvirt", "with_libvirt", default=True, show_default=True,
              help="Boot the inventory's VMs as real KVM guests and run the libvirt exporter.")
@click.option("--ovs/--no-ovs", "with_ovs", default=True, show_default=True,
              help="Run a userspace Open vSwitch with a port per inventory NIC and the OVS "
                   "exporter.")
@click.option("--ceph/--no-ceph", "with_ceph", default=True, show_default=True,
              help="Run a single-node Ceph cluster with an RBD image per inventory volume and "
                   "the Ceph exporter.")
@click.pass_context
def demo(ctx: click.Context, workdir: Path | None, duration: float | None,
         with_libvirt: bool, with_ovs: bool, with_ceph: bool) -> None:
    """Bring up a local demo of the stack on real daemons and print what it sees."""
    from zcp.demo import run_demo

    run_demo(_config(ctx), workdir, duration, with_libvirt, with_ovs, with_ceph)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="zcp-obs")


if __name__ == "__main__":  # pragma: no cover
    main()
