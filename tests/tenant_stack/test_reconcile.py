"""The reconciler with the local driver on real Prometheus processes: stacks created from the
desired accounts federate their own series only through the gate; a second run changes
nothing; drift is repaired and counted; a tier change restarts with the new retention; a
retired tenant stops with its data kept, then is purged; kill -9 mid-run converges; two runs at
once do not both run; hostile account names never break a file, path or unit."""

from __future__ import annotations

import configparser
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from lab.prometheus import PrometheusServer
from tenant_stack.gate import Gate
from tenant_stack.reconcile import Reconciler
from tenant_stack.render import (
    DASHBOARD_PROVIDER,
    DATASOURCE,
    GATE_TOKEN,
    GRAFANA_INI,
    PROMETHEUS_YML,
    Ports,
    Secrets,
    Site,
    Tenant,
    Tier,
    render,
)
from tenant_stack.state import load, locked
from tests.tenant_stack.cloud import SCRAPE, A, B, C
from zcp.config import GateConfig, LocalDriverConfig, TenantsConfig, TierConfig
from zcp.errors import ZcpError
from zcp.wait import wait_until

NAMES = {A: 'acme "quoted" }', B: "globex\nnewline", C: "../../etc/passwd .*+?[]{}"}


@pytest.fixture(scope="module")
def boards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dashboards.build import build_all, encode

    out = tmp_path_factory.mktemp("boards")
    for b in build_all():
        if b.audience == "tenant":
            (out / f"{b.uid}.json").write_text(encode(b.doc))
    return out


@pytest.fixture(scope="module")
def gate(operator: PrometheusServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    work = tmp_path_factory.mktemp("recgate")
    g = Gate(
        GateConfig(
            listen="127.0.0.1:0",
            metrics_listen="127.0.0.1:0",
            upstream=operator.url,
            tokens_file=work / "tokens.yaml",
        )
    ).start()
    yield g
    g.shutdown()


def tenants_cfg(tmp: Path, gate: Gate, boards: Path, **kw: Any) -> TenantsConfig:
    return TenantsConfig(
        state_dir=tmp / "state",
        accounts=kw.pop("accounts", {A: "standard", B: "standard", C: "standard"}),
        tiers={
            "standard": TierConfig(retention="1d", scrape_interval="1s"),
            "long": TierConfig(retention="30d", scrape_interval="1s"),
        },
        dashboards_dir=boards,
        gate_url=f"http://127.0.0.1:{gate.port}",
        metrics_textfile=tmp / "tenants.prom",
        local=LocalDriverConfig(port_base=_base()),
        gate=GateConfig(tokens_file=gate.cfg.tokens_file),
        **kw,
    )


def _base() -> int:
    """Six free ports in a row for three tenants, below the ephemeral range (so no client
    socket takes one meanwhile)."""
    import random
    import socket

    for _ in range(200):
        base = random.randrange(20000, 32000, 2)
        try:
            for p in range(base, base + 6):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
    raise RuntimeError("no six free ports in a row")


def desired(cfg: TenantsConfig, names: dict[str, str] = NAMES) -> Any:
    return lambda: {a: Tenant(a, names[a], t) for a, t in (cfg.accounts or {}).items()}


def pids(cfg: TenantsConfig) -> dict[str, int]:
    out = {}
    for tid in (A, B, C):
        path = cfg.state_dir / "tenants" / tid / "prometheus" / "prometheus.pid"
        if path.exists():
            out[tid] = int(path.read_text())
    return out


def prometheus_processes(root: Path) -> list[int]:
    """Live Prometheus processes whose config is under ``root``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(a.startswith(b"--config.file=" + str(root).encode()) for a in cmd):
            found.append(int(entry.name))
    return found


def query(port: int, expr: str) -> list[dict[str, Any]]:
    r = requests.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": expr}, timeout=10)
    return list(r.json()["data"]["result"])


@pytest.fixture
def cfg(tmp_path: Path, gate: Gate, boards: Path) -> Iterator[TenantsConfig]:
    c = tenants_cfg(tmp_path, gate, boards)
    yield c
    for pid in prometheus_processes(c.state_dir):
        os.kill(pid, signal.SIGKILL)


def test_stacks_federate_their_own_series_and_a_second_run_changes_nothing(
    cfg: TenantsConfig, operator: PrometheusServer
) -> None:
    rec = Reconciler(cfg, desired(cfg))
    first = rec.run()
    assert [a.kind for a in first.actions] == ["create"] * 3 and not first.failed
    state = load(cfg.state_dir)
    for tid in (A, B, C):
        record = state.tenants[tid]
        want = {
            tuple(sorted((k, v) for k, v in x["metric"].items() if k not in SCRAPE))
            for x in operator.query(f'{{__name__=~"tenant:.+",tenant="{tid}"}}')
        }

        def held(port: int = record.prometheus_port) -> set[Any]:
            return {
                tuple(sorted((k, v) for k, v in x["metric"].items() if k not in SCRAPE))
                for x in query(port, '{__name__=~"tenant:.+"}')
            }

        assert want and wait_until(lambda w=want, h=held: h() == w, 60, 0.5), tid
        others = query(
            record.prometheus_port,
            f'{{__name__=~".+",__name__!~"up|scrape_.+",job!="prometheus",tenant!="{tid}"}}',
        )
        assert others == [], others
    # a second run: nothing to do, no file rewritten, no process restarted
    files = {
        p: p.stat().st_mtime_ns
        for p in cfg.state_dir.rglob("*")
        if p.is_file() and "data" not in p.parts and p.suffix != ".log"
    }
    before = pids(cfg)
    second = rec.run()
    assert [a.kind for a in second.actions] == ["keep"] * 3
    assert pids(cfg) == before
    after = {p: p.stat().st_mtime_ns for p in files}
    changed = [
        p for p in files if after[p] != files[p] and p.name not in ("state.json", "reconcile.lock")
    ]
    assert changed == []
    # the health textfile for node_exporter
    text = cfg.metrics_textfile.read_text()  # type: ignore[union-attr]
    assert f'zcp_tenant_stack_up{{component="prometheus",tenant="{A}"}} 1.0' in text
    assert "zcp_tenant_reconcile_last_run_success 1.0" in text


def test_drift_is_repaired_and_counted(cfg: TenantsConfig) -> None:
    rec = Reconciler(cfg, desired(cfg))
    rec.run()
    root_a = cfg.state_dir / "tenants" / A
    (root_a / PROMETHEUS_YML).write_text("scrape_configs: []\n")  # hand-edited
    board = next((root_a / "grafana" / "dashboards").glob("*.json"))
    board.unlink()
    os.kill(pids(cfg)[B], signal.SIGKILL)  # B's Prometheus died
    assert wait_until(
        lambda: (
            B
            not in {
                t
                for t, p in pids(cfg).items()
                if prometheus_processes(cfg.state_dir / "tenants" / t)
            }
        ),
        10,
        0.1,
    )
    plan = rec.run(dry_run=True)
    assert {a.tenant: a.kind for a in plan.actions} == {A: "repair", B: "repair", C: "keep"}
    assert any("prometheus.yml" in line for a in plan.actions for line in a.detail)
    assert (root_a / PROMETHEUS_YML).read_text() == "scrape_configs: []\n"  # dry: untouched
    out = rec.run()
    assert not out.failed
    state = load(cfg.state_dir)
    assert state.tenants[A].drift_repaired == 1 and state.tenants[B].drift_repaired == 1
    assert "tenant:.+" in (root_a / PROMETHEUS_YML).read_text() and board.exists()
    assert len(prometheus_processes(cfg.state_dir / "tenants" / B)) == 1
    assert (
        f'zcp_tenant_stack_drift_repaired_total{{tenant="{A}"}} 1.0'
        in cfg.metrics_textfile.read_text()
    )  # type: ignore[union-attr]


def test_a_tier_change_restarts_with_the_new_retention(cfg: TenantsConfig) -> None:
    Reconciler(cfg, desired(cfg)).run()
    before = pids(cfg)
    longer = cfg.model_copy(update={"accounts": {A: "long", B: "standard", C: "standard"}})
    out = Reconciler(longer, desired(longer)).run()
    assert {a.tenant: a.kind for a in out.actions} == {A: "update", B: "keep", C: "keep"}
    now = pids(cfg)
    assert now[A] != before[A] and now[B] == before[B]
    cmd = Path(f"/proc/{now[A]}/cmdline").read_bytes().split(b"\0")
    assert b"--storage.tsdb.retention.time=30d" in cmd


def test_a_retired_tenant_stops_keeps_its_data_then_is_purged(
    cfg: TenantsConfig, gate: Gate
) -> None:
    clock = [time.time()]
    Reconciler(cfg, desired(cfg), clock=lambda: clock[0]).run()
    token_c = (cfg.state_dir / "tenants" / C / GATE_TOKEN).read_text().strip()
    fed = f"http://127.0.0.1:{gate.port}/federate"
    assert requests.get(fed, headers={"Authorization": f"Bearer {token_c}"}, timeout=10).ok
    fewer = cfg.model_copy(update={"accounts": {A: "standard", B: "standard"}})
    rec = Reconciler(fewer, desired(fewer), clock=lambda: clock[0])
    out = rec.run()
    assert {a.tenant: a.kind for a in out.actions}[C] == "retire"
    assert prometheus_processes(cfg.state_dir / "tenants" / C) == []
    assert (cfg.state_dir / "tenants" / C / "prometheus" / "data").is_dir()  # data kept
    assert load(cfg.state_dir).tenants[C].status == "retired"
    # its token no longer opens the gate
    assert wait_until(
        lambda: (
            requests.get(
                fed, headers={"Authorization": f"Bearer {token_c}"}, timeout=10
            ).status_code
            == 401
        ),
        10,
        0.2,
    )
    clock[0] += 29 * 86400
    assert {a.tenant: a.kind for a in rec.run().actions}.get(C) is None  # kept: 30 days
    clock[0] += 2 * 86400
    assert {a.tenant: a.kind for a in rec.run().actions}[C] == "purge"
    assert not (cfg.state_dir / "tenants" / C).exists() and C not in load(cfg.state_dir).tenants


def _cli_config(cfg: TenantsConfig, path: Path) -> Path:
    doc = {"tenants": json.loads(cfg.model_dump_json())}
    path.write_text(yaml.safe_dump(doc))
    return path


def test_kill_9_mid_run_then_a_rerun_converges(cfg: TenantsConfig, tmp_path: Path) -> None:
    conf = _cli_config(cfg, tmp_path / "c.yaml")
    argv = [sys.executable, "-m", "zcp_obs", "--config", str(conf), "tenants", "reconcile"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert wait_until(lambda: pids(cfg) or proc.poll() is not None, 60, 0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    done_at_kill = len(pids(cfg))
    assert done_at_kill < 3, "the run ended before it could be killed"
    rerun = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    state = load(cfg.state_dir)
    assert {t for t, r in state.tenants.items() if r.status == "active"} == {A, B, C}
    for tid in (A, B, C):  # one Prometheus each: none started twice, none missing
        assert len(prometheus_processes(cfg.state_dir / "tenants" / tid)) == 1, tid
    again = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert "0 changed, 3 unchanged" in again.stderr


def test_two_runs_at_once(cfg: TenantsConfig, tmp_path: Path) -> None:
    conf = _cli_config(cfg, tmp_path / "c.yaml")
    argv = [sys.executable, "-m", "zcp_obs", "--config", str(conf), "tenants", "reconcile"]
    release = threading.Event()
    held = threading.Event()

    def hold() -> None:
        with locked(cfg.state_dir):
            held.set()
            release.wait(60)

    t = threading.Thread(target=hold)
    t.start()
    assert held.wait(10)
    busy = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert busy.returncode == 1
    assert "another reconcile is running" in busy.stderr and "Traceback" not in busy.stderr
    waiting = subprocess.Popen(
        [*argv, "--wait", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    release.set()
    t.join()
    _, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err


HOSTILE_NAMES = [
    'a"b',
    '"}',
    "x\ny\r\nz",
    ".*+?[]()|^$\\",
    "../../../etc/shadow",
    "n" * 10000,
    "\udcff\udcfe bytes that are not UTF-8",
    "'; DROP TABLE tenants; --",
    "${HOME} $(reboot) `id`",
    "[security]\nadmin_password = x",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_account_names_never_break_a_file_path_or_unit(name: str, tmp_path: Path) -> None:
    root = tmp_path / "tenants" / A

    def stack_named(n: str) -> Any:
        return render(
            Tenant(A, n, "standard"),
            Tier("standard"),
            Ports(19100, 19101),
            Secrets("t", "p", "k"),
            Site("https://gate.example:9480", "/etc/ca.pem"),
            root,
            {},
        )

    stack, plain = stack_named(name), stack_named("plain")
    for rel, content in stack.files.items():
        assert not Path(rel).is_absolute() and ".." not in Path(rel).parts
        if rel != "tenant.json":  # the name is data there, and nowhere else
            assert content == plain.files[rel], rel
    prom = yaml.safe_load(stack.files[PROMETHEUS_YML])
    assert prom["scrape_configs"][0]["static_configs"][0]["targets"] == ["gate.example:9480"]
    ini = configparser.ConfigParser(interpolation=None)
    ini.read_string(stack.files[GRAFANA_INI])
    assert ini["security"]["admin_password"] == f"$__file{{{root}/grafana/admin.password}}"
    assert json.loads(stack.files["tenant.json"])["name"] == name


def test_hostile_tenant_ids_are_refused(tmp_path: Path) -> None:
    for bad in ("../x", "", "a b", "x" * 200, 'a"b', "a/b"):
        with pytest.raises(ZcpError, match="not a tenant id"):
            render(
                Tenant(bad, "n", "standard"),
                Tier("standard"),
                Ports(1, 2),
                Secrets("t", "p", "k"),
                Site("http://g:1"),
                tmp_path,
                {},
            )


def test_grafana_provisioning_is_locked_down_and_carries_the_built_dashboards(
    cfg: TenantsConfig, boards: Path
) -> None:
    Reconciler(cfg, desired(cfg)).run()
    root = cfg.state_dir / "tenants" / A
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(root / GRAFANA_INI)
    assert ini["auth.anonymous"]["enabled"] == "false"
    assert ini["users"]["allow_sign_up"] == "false" and ini["users"]["allow_org_create"] == "false"
    assert ini["analytics"]["reporting_enabled"] == "false"
    assert ini["snapshots"]["external_enabled"] == "false"
    assert ini["server"]["http_addr"] == "127.0.0.1"
    password = (root / "grafana" / "admin.password").read_text().strip()
    assert (
        len(password) >= 32
        and (root / "grafana" / "admin.password").stat().st_mode & 0o777 == 0o600
    )
    assert (
        root / GATE_TOKEN
    ).stat().st_mode & 0o777 == 0o600 and root.stat().st_mode & 0o777 == 0o700
    # Grafana's provisioning formats (docs: administration/provisioning)
    ds = yaml.safe_load((root / DATASOURCE).read_text())
    assert ds["apiVersion"] == 1
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus" and source["access"] == "proxy" and source["isDefault"]
    record = load(cfg.state_dir).tenants[A]
    assert source["url"] == f"http://127.0.0.1:{record.prometheus_port}"
    prov = yaml.safe_load((root / DASHBOARD_PROVIDER).read_text())
    (provider,) = prov["providers"]
    assert (
        provider["type"] == "file"
        and Path(provider["options"]["path"]) == root / "grafana" / "dashboards"
    )
    built = {p.name: p.read_text() for p in boards.glob("*.json")}
    served = {p.name: p.read_text() for p in (root / "grafana" / "dashboards").glob("*.json")}
    assert built and served == built
    # no secret is ever logged or printed by list/show
    conf = _cli_config(cfg, cfg.state_dir.parent / "c.yaml")
    for cmd in (["list"], ["show", A]):
        out = subprocess.run(
            [sys.executable, "-m", "zcp_obs", "--config", str(conf), "tenants", *cmd],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert password not in out.stdout + out.stderr
