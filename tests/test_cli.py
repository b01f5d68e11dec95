"""The zcp-obs command line: the groups each part mounts, one-line errors, inventory show, the
exporter commands run from the YAML config alone, the demo."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from lab.cloudstack_sim import CloudStackSim
from tests.support import ADMIN_KEY, ADMIN_SECRET
from zcp_obs.cli import cli

# each group the application mounts, with the commands its part really has
GROUPS = {
    "inventory": {"show"},
    "exporter": {"libvirt", "ovs", "ceph", "inventory"},
    "alerts": {"build", "check"},
    "metering": {"run", "estimate", "close", "report", "reconcile", "db"},
    "dashboards": {"build", "check", "upload", "provision", "preview"},
    "tenants": {"reconcile", "list", "show", "retire", "federation-proxy"},
}


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zcp_obs", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def write_config(tmp_path: Path, doc: dict[str, object]) -> Path:
    path = tmp_path / "zcp-obs.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _commands(output: str) -> set[str]:
    """The names listed under ``Commands:`` in a help text."""
    if "Commands:" not in output:
        return set()
    lines = output.split("Commands:", 1)[1].splitlines()[1:]
    return {line.split()[0] for line in lines if line.startswith("  ") and line.strip()}


def test_root_mounts_every_part_and_the_lab_demo() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert _commands(result.output) == {*GROUPS, "demo"}


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_every_group_lists_its_real_commands(group: str) -> None:
    result = CliRunner().invoke(cli, [group, "--help"])
    assert result.exit_code == 0
    assert _commands(result.output) == GROUPS[group]
    for command in GROUPS[group]:
        sub = CliRunner().invoke(cli, [group, command, "--help"])
        assert sub.exit_code == 0, sub.output
        summary = sub.output.split("\n\n")[1].strip()
        assert len(summary) > 20, f"{group} {command}: {summary!r}"


def test_systemd_units_run_real_commands() -> None:
    units = sorted((Path(__file__).resolve().parents[1] / "deploy" / "systemd").glob("*.service"))
    assert {u.name for u in units} >= {
        "zcp-obs-inventory.service",
        "zcp-obs-libvirt-exporter.service",
        "zcp-obs-ovs-exporter.service",
        "zcp-obs-ceph-exporter.service",
    }
    for unit in units:
        argv = exec_start(unit)
        if not argv[0].endswith("/zcp-obs"):
            continue  # a tenant's Prometheus or Grafana: see the next test
        result = CliRunner().invoke(cli, [*argv[1:], "--help"])
        assert result.exit_code == 0, f"{unit.name}: {result.output}"


def exec_start(unit: Path) -> list[str]:
    """A unit's ExecStart command line (continuation lines joined)."""
    text = unit.read_text().replace("\\\n", " ")
    line = next(x for x in text.splitlines() if x.startswith("ExecStart="))
    return line.removeprefix("ExecStart=").split()


def test_the_tenant_prometheus_unit_runs_what_the_direct_driver_runs(tmp_path: Path) -> None:
    from tenant_stack.render import (
        PROMETHEUS_ENV,
        Ports,
        Secrets,
        Site,
        Tenant,
        Tier,
        parse_env,
        prometheus_args,
        render,
    )

    tenant = "7b743d5e-a9e5-5cfe-8cbc-52b3cd725c70"
    root = Path("/var/lib/zcp-obs/tenants/tenants") / tenant
    stack = render(
        Tenant(tenant, "acme", "standard"),
        Tier("standard"),
        Ports(19100, 19101),
        Secrets("t", "p", "k"),
        Site("http://127.0.0.1:9480"),
        root,
        {},
    )
    env = parse_env(stack.files[PROMETHEUS_ENV])
    unit = Path(__file__).resolve().parents[1] / "deploy/systemd/zcp-obs-tenant-prometheus@.service"
    argv = [a.replace("%i", tenant) for a in exec_start(unit)]
    for key, value in env.items():
        argv = [a.replace("${" + key + "}", value) for a in argv]
    assert argv == prometheus_args("/usr/bin/prometheus", root, env)
    assert f"EnvironmentFile={root / PROMETHEUS_ENV}".replace(tenant, "%i") in unit.read_text()


@pytest.mark.parametrize("name", ["region", "hypervisor", "ceph", "metering"])
def test_production_configs_are_valid(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zcp.config import load_config

    text = (Path(__file__).resolve().parents[1] / "deploy" / "config" / f"{name}.yaml").read_text()
    for secret in re.findall(r"\{file: /etc/zcp-obs/([\w.-]+)\}", text):  # secret files
        (tmp_path / secret).write_text("x\n")
        text = text.replace(f"/etc/zcp-obs/{secret}", str(tmp_path / secret))
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    cfg = load_config(path)
    if name == "region":
        assert cfg.inventory.source == "cloudstack" and cfg.cloudstack is not None
    elif name == "metering":  # reconcile reads CloudStack's usage records
        assert cfg.metering.pushgateway_url and cfg.cloudstack is not None
    else:  # no CloudStack key on hypervisors
        assert cfg.inventory.source == "service" and cfg.cloudstack is None


def test_inventory_show_from_cloudstack(cloudstack: CloudStackSim, tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path,
        {"cloudstack": {"url": cloudstack.url, "api_key": ADMIN_KEY, "secret_key": ADMIN_SECRET}},
    )
    result = run(
        "--config", str(cfg), "inventory", "show", "--source", "cloudstack", "--format", "json"
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["source"] == "cloudstack"
    assert sorted(v["name"] for v in doc["vms"]) == [
        "app-1",
        "batch-1",
        "db-1",
        "tps-1",
        "web-1",
        "web-2",
    ]
    table = run(
        "--config", str(cfg), "inventory", "show", "--source", "cloudstack", "--kind", "vms"
    )
    assert table.returncode == 0
    assert "i-2-10-VM" in table.stdout and "## vms (6)" in table.stdout


def test_wrong_secret_is_a_one_line_error(cloudstack: CloudStackSim, tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path,
        {"cloudstack": {"url": cloudstack.url, "api_key": ADMIN_KEY, "secret_key": "wrong-secret"}},
    )
    result = run(
        "--config", str(cfg), "--log-format", "text", "inventory", "show", "--source", "cloudstack"
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [
        f"Error: CloudStack at {cloudstack.url} rejected the API key or signature "
        "(401: unable to verify user credentials and/or request signature); check "
        "cloudstack.api_key and cloudstack.secret_key"
    ]
    assert "Traceback" not in result.stderr and "wrong-secret" not in result.stderr


def test_cached_copy_is_shown_when_cloudstack_is_down(
    cloudstack: CloudStackSim, tmp_path: Path
) -> None:
    cfg = write_config(
        tmp_path,
        {
            "cloudstack": {"url": cloudstack.url, "api_key": ADMIN_KEY, "secret_key": ADMIN_SECRET},
            "inventory": {"source": "cloudstack", "cache_file": str(tmp_path / "cache.json")},
        },
    )
    assert run("--config", str(cfg), "inventory", "show").returncode == 0
    cloudstack.stop()
    result = run("--config", str(cfg), "inventory", "show", "--kind", "tenants")
    assert result.returncode == 0
    assert "warning: cannot reach CloudStack" in result.stderr
    assert "acme" in result.stdout


def test_bad_config_is_a_one_line_error(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, {"inventory": {"sourze": "file"}})
    result = run("--config", str(cfg), "inventory", "show")
    assert result.returncode == 1
    assert result.stderr.strip() == (f"Error: invalid config {cfg}: inventory.sourze: unknown key")


def test_missing_cloudstack_section(tmp_path: Path) -> None:
    result = run(
        "--config", str(write_config(tmp_path, {})), "inventory", "show", "--source", "cloudstack"
    )
    assert result.returncode == 1
    assert result.stderr.strip().endswith(
        "Error: inventory source is cloudstack but the config has no cloudstack:"
    )


def table(lines: list[str], title: str) -> list[str]:
    """The rows of the table printed under ``title`` (after its header and rule lines)."""
    rows = lines[lines.index(title) + 3 :]
    return rows[: rows.index("")] if "" in rows else rows


@pytest.mark.integration
def test_the_application_runs_without_the_lab() -> None:
    code = (
        "import sys\n"
        "class NoLab:  # as on a hypervisor: the lab distribution is not installed\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.partition('.')[0] == 'lab':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, NoLab())\n"
        "from click.testing import CliRunner\n"
        "from zcp_obs.cli import cli\n"
        "out = CliRunner().invoke(cli, ['--help']).output\n"
        "commands = {l.split()[0] for l in out.split('Commands:')[1].splitlines()[1:]}\n"
        "parts = {'alerts', 'dashboards', 'exporter', 'inventory', 'metering', 'tenants'}\n"
        "assert commands == parts, out\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.integration
def test_the_production_wheel_holds_the_core_the_parts_and_the_application(tmp_path: Path) -> None:
    import zipfile

    root = Path(__file__).resolve().parents[1]
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(root), "--no-deps", "-q", "-w", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("zcp_observability-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {
        "zcp",
        "zcp_obs",
        "exporters",
        "alerts",
        "dashboards",
        "metering",
        "tenant_stack",
    }
    assert "zcp/inventory/default.yaml" in names
    assert "tenant_stack/units/zcp-obs-tenant-prometheus@.service" in names
