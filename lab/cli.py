"""``zcp-obs demo``: the lab's command, mounted by the application where the lab is installed.

``zcp-obs demo`` runs in the foreground until Ctrl-C (or ``--duration``); ``demo up``, ``demo
status`` and ``demo down`` run the same demo detached, with a state directory of its own.
"""

from __future__ import annotations

from pathlib import Path

import click
from tabulate import tabulate

from zcp.cliutil import config_of

STATE = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The detached demo's state: PID, log, summary, work dir "
    "(default: $ZCP_DEMO_STATE or /var/tmp/zcp-obs-demo).",
)


def _parts(f):  # type: ignore[no-untyped-def]
    """The options choosing what the demo brings up, shared by ``demo`` and ``demo up``."""
    for name, text in reversed(
        [
            (
                "libvirt",
                "the inventory's VMs as real guests (KVM, else TCG) and the libvirt exporter",
            ),
            ("ovs", "a userspace Open vSwitch with a port per NIC, a VXLAN port, the OVS exporter"),
            ("ceph", "a single-node Ceph cluster with an RBD image per volume, the Ceph exporter"),
            ("tenants", "each tenant's own Prometheus, federating through the gate"),
            ("fault", "destroy a running guest, show the page and its resolution"),
        ]
    ):
        f = click.option(
            f"--{name}/--no-{name}", f"with_{name}", default=True, show_default=True, help=text
        )(f)
    return f


def _options(flags: dict[str, bool]):  # type: ignore[no-untyped-def]
    from lab.demo import Options

    return Options(**{k.removeprefix("with_"): v for k, v in flags.items()})


@click.group(invoke_without_command=True)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the demo keeps its daemons' data and logs (default: a temp dir).",
)
@click.option(
    "--duration",
    type=click.FloatRange(0),
    default=None,
    help="Stop after this many seconds once up (default: run until Ctrl-C).",
)
@click.option("--ready-file", type=click.Path(path_type=Path), default=None, hidden=True)
@_parts
@click.pass_context
def demo(
    ctx: click.Context,
    workdir: Path | None,
    duration: float | None,
    ready_file: Path | None,
    **flags: bool,
) -> None:
    """The whole stack on real daemons: run until Ctrl-C, or detached (up/status/down)."""
    if ctx.invoked_subcommand is not None:
        return
    from lab.demo import run_demo

    config_path = ctx.find_root().ensure_object(dict).get("config_path")
    run_demo(config_of(ctx), config_path, workdir, duration, _options(flags), ready_file)


def _root_args(ctx: click.Context) -> list[str]:
    """The root options this command was given, for the detached demo."""
    root = ctx.find_root()
    args = []
    config = root.ensure_object(dict).get("config_path")
    if config is not None:
        args += ["--config", str(Path(config).resolve())]
    fmt = root.params.get("log_format")
    if fmt:
        args += ["--log-format", fmt]
    return args


@demo.command("up")
@STATE
@click.option("--timeout", type=click.FloatRange(1), default=900.0, show_default=True)
@_parts
@click.pass_context
def up(ctx: click.Context, state_dir: Path | None, timeout: float, **flags: bool) -> None:
    """Start the demo detached; show its progress until it is up, then its summary."""
    from lab.demo import summary_text
    from lab.demo_control import default_state_dir
    from lab.demo_control import up as start

    args = [f"--{'' if on else 'no-'}{k.removeprefix('with_')}" for k, on in flags.items()]
    doc = start(_root_args(ctx), state_dir or default_state_dir(), args, timeout)
    click.echo(summary_text(doc, "zcp-obs demo down"))


@demo.command("status")
@STATE
def status(state_dir: Path | None) -> None:
    """What the detached demo runs, and whether each part answers."""
    from lab.demo_control import default_state_dir
    from lab.demo_control import status as rows

    click.echo(tabulate(rows(state_dir or default_state_dir()), headers="keys"))


@demo.command("down")
@STATE
@click.option("--timeout", type=click.FloatRange(1), default=180.0, show_default=True)
def down(state_dir: Path | None, timeout: float) -> None:
    """Stop the detached demo and everything it started; check nothing is left behind."""
    from lab.demo_control import default_state_dir
    from lab.demo_control import down as stop

    forced = stop(state_dir or default_state_dir(), timeout)
    left = [f"{kind}: {', '.join(items)}" for kind, items in forced.items() if items]
    if left:
        click.echo("removed what the demo left behind: " + "; ".join(left), err=True)
    click.echo("the demo is down: no daemon, namespace or bridge of it is left")


@demo.command("finance")
@STATE
@click.option(
    "--max-wait",
    type=click.FloatRange(0),
    default=None,
    help="Seconds to wait for the demo's first hour to settle (default: as long as it takes).",
)
def finance_(state_dir: Path | None, max_wait: float | None) -> None:
    """Meter the detached demo's settled hours from its long-term store; print the report."""
    from lab.demo_control import default_state_dir, read_summary, running_pid
    from lab.demo_finance import finance, finance_table
    from zcp.errors import DaemonError

    state = state_dir or default_state_dir()
    doc = read_summary(state)
    if doc is None or running_pid(state) is None:
        raise DaemonError(f"no demo runs with state in {state} (`zcp-obs demo up` first)")
    config = doc.get("config_path")
    result = finance(
        Path(doc["workdir"]),
        doc["urls"]["VictoriaMetrics (long-term store)"],
        float(doc["started_at"]),
        "json",
        Path(config) if config else None,
        max_wait=max_wait,
    )
    click.echo(finance_table(result))
    click.echo(f"FOCUS CSV: {', '.join(result['focus_csv'])}")
    click.echo(f"statement: {', '.join(result['html'])}")
