"""Rules, their promtool tests, the Alertmanager config and its routing, checked with the real
promtool/amtool and (inhibition) a real Alertmanager."""

from __future__ import annotations

import dataclasses
import re
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
import yaml

from alerts.build import build, check
from alerts.ceph import UPSTREAM, ceph_alerts
from alerts.model import Alert, Case, Group
from alerts.rules import groups
from lab.alerting import PAGE_MARGIN_SECONDS, WebhookReceiver
from lab.prometheus import AlertmanagerServer
from tests.samples import wait_until
from tests.support import need_binary
from zcp.config import AlertingConfig, PromisesConfig, parse_config
from zcp.errors import ConfigError, ZcpError

RUNBOOKS = Path(__file__).resolve().parents[2] / "alerts" / "runbooks"
ALL = [a for g in groups() for a in g.alerts]


@pytest.fixture
def tools() -> None:
    need_binary("promtool", "prometheus")
    need_binary("amtool", "prometheus-alertmanager")
    need_binary("prometheus-blackbox-exporter", "prometheus-blackbox-exporter")


def test_built_rules_and_config_pass_promtool_and_amtool(tmp_path: Path, tools: None) -> None:
    build(tmp_path, AlertingConfig())
    done = check(tmp_path)
    assert done[:3] == ["promtool check rules", "promtool test rules", "amtool check-config"]
    assert len([d for d in done if d.startswith("route ")]) >= 15
    tests = yaml.safe_load((tmp_path / "rules/zcp.tests.yml").read_text())["tests"]
    # every alert: a firing case and a quiet case, each checked at the boundary of its for:
    for alert in ALL:
        mine = [t for t in tests if t["name"].startswith(f"{alert.name} case")]
        assert any(c["exp_alerts"] for t in mine for c in t["alert_rule_test"]), alert.name
        assert any(not c["exp_alerts"] for t in mine for c in t["alert_rule_test"]), alert.name


@pytest.mark.parametrize(
    "mutation",
    [
        ("for: 2m", "for: 4m"),  # a longer for: than tested
        ("severity: critical", "severity: warning"),  # a page downgraded to a ticket
        ("== 6", "== 7"),  # VMCrashed watching the wrong state
    ],
)
def test_promtool_tests_catch_a_changed_rule(
    tmp_path: Path, tools: None, mutation: tuple[str, str]
) -> None:
    build(tmp_path, AlertingConfig())
    rules = tmp_path / "rules/zcp.rules.yml"
    text = rules.read_text()
    assert mutation[0] in text
    rules.write_text(text.replace(mutation[0], mutation[1], 1))
    with pytest.raises(ZcpError, match="promtool test rules failed"):
        check(tmp_path)


def test_every_alert_is_complete() -> None:
    names = [a.name for a in ALL]
    assert len(names) == len(set(names))
    assert {a.severity for a in ALL} == {"critical", "warning", "info"}
    assert {a.area for a in ALL} == {"compute", "storage", "network", "platform"}
    for alert in ALL:
        for text in (alert.summary, alert.description):
            # only {{ $labels.x }}: what promtool's exact annotation check can follow
            leftover = re.sub(r"\{\{\s*\$labels\.\w+\s*\}\}", "", text)
            assert "{{" not in leftover, (alert.name, text)
        assert re.search(r"\$labels\.\w+", alert.description) or alert.name in (
            "MeteringJobFailed",
        ), f"{alert.name}: description names no object"


def test_every_alert_has_a_runbook_section() -> None:
    for alert in ALL:
        book = RUNBOOKS / f"{alert.area}.md"
        assert book.exists(), book
        headings = re.findall(r"^## (\w+)\s*$", book.read_text(), re.M)
        assert alert.name in headings, f"{alert.name}: no section in {book.name}"
        section = book.read_text().split(f"## {alert.name}\n", 1)[1].split("\n## ", 1)[0]
        assert "**Diagnose**" in section and "**Mitigate**" in section, alert.name


def test_an_alert_without_both_cases_is_refused() -> None:
    with pytest.raises(ValueError, match="needs a case that fires and one that stays quiet"):
        Alert(
            "X",
            "up == 0",
            "1m",
            "warning",
            "platform",
            "s",
            "d",
            (Case({"up": "0x5"}, ({"job": "x"},)),),
        )


def test_duplicate_alert_names_are_refused(tmp_path: Path) -> None:
    group = groups()[1]
    with pytest.raises(ZcpError, match="duplicate alert names: HypervisorHostDown"):
        build(tmp_path, AlertingConfig(), [group, Group("again", (group.alerts[0],))])


def test_upstream_ceph_rules_are_pinned(tmp_path: Path) -> None:
    if not UPSTREAM.exists():
        need_binary("missing-ceph-prometheus-alerts", "ceph-prometheus-alerts")
    changed = tmp_path / "ceph_default_alerts.yml"
    changed.write_text(
        UPSTREAM.read_text().replace('"ceph_health_status == 2"', '"ceph_health_status >= 2"')
    )
    with pytest.raises(ConfigError, match="upstream Ceph rule CephHealthError changed"):
        ceph_alerts(changed)
    with pytest.raises(ConfigError, match="apt-get install ceph-prometheus-alerts"):
        ceph_alerts(tmp_path / "missing.yml")
    reused = [a for a in ceph_alerts().alerts if a.upstream]
    assert {a.name for a in reused} >= {"CephHealthError", "CephOSDDown", "CephPGsUnclean"}


def test_receivers_and_secrets_come_from_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PD_KEY", "pd-secret-1234")
    (tmp_path / "smtp").write_text("smtp-secret-5678\n")
    cfg = parse_config(
        {
            "alerting": {
                "webhook": {"url": "https://chat.example/hook/tok-abc"},
                "email": {
                    "to": "ops@example.com",
                    "sender": "am@example.com",
                    "smarthost": "smtp.example.com:587",
                    "username": "am",
                    "password": {"file": str(tmp_path / "smtp")},
                },
                "pagerduty": {"routing_key": {"env": "PD_KEY"}},
            }
        },
        "test",
    ).alerting
    built = build(tmp_path / "out", cfg)
    am = yaml.safe_load(built.alertmanager.read_text())
    recv = {r["name"]: r for r in am["receivers"]}
    assert recv["compute-critical"]["pagerduty_configs"][0]["routing_key"] == "pd-secret-1234"
    assert "email_configs" not in recv["compute-critical"]
    assert recv["storage-warning"]["email_configs"][0]["auth_password"] == "smtp-secret-5678"
    assert "pagerduty_configs" not in recv["storage-warning"]
    assert recv["network-info"]["webhook_configs"][0]["url"] == "https://chat.example/hook/tok-abc"
    assert set(recv["network-info"]) == {"name", "webhook_configs"}
    assert stat.S_IMODE(built.alertmanager.stat().st_mode) == 0o600
    for other in (built.rules, built.tests, built.route_tests):
        assert "secret" not in other.read_text()
    # nothing secret is in the code that generates the config
    code = "".join(p.read_text() for p in (Path(__file__).parents[2] / "alerts").glob("*.py"))
    assert 'routing_key": "' not in code and "pd-secret" not in code


def test_cli_build_then_check(tmp_path: Path, tools: None) -> None:
    zcp_obs = str(Path(sys.executable).parent / "zcp-obs")
    out = subprocess.run(
        [zcp_obs, "alerts", "build", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "no receivers configured" in out.stderr
    res = subprocess.run(
        [zcp_obs, "alerts", "check", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert re.search(r"ok: \d+ checks passed", res.stdout)
    missing = subprocess.run(
        [zcp_obs, "alerts", "check", "--out", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1
    assert missing.stderr.strip().startswith("Error: ") and "alerts build" in missing.stderr
    assert "Traceback" not in missing.stderr


# -- inhibition on a real Alertmanager --------------------------------------------------------
@pytest.fixture(scope="module")
def built_alertmanager(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[AlertmanagerServer, WebhookReceiver, AlertingConfig]]:
    need_binary("prometheus-alertmanager", "prometheus-alertmanager")
    receiver = WebhookReceiver()
    workdir = tmp_path_factory.mktemp("am-inhibit")
    cfg = parse_config(
        {
            "alerting": {
                "webhook": {"url": receiver.url},
                "group_wait_seconds": 1,
                "group_interval_seconds": 1,
            }
        },
        "test",
    ).alerting
    built = build(workdir / "alerts", cfg)
    server = AlertmanagerServer(workdir / "am", yaml.safe_load(built.alertmanager.read_text()))
    server.start()
    yield server, receiver, cfg
    server.stop()
    receiver.close()


def _post(am: AlertmanagerServer, *alerts: dict[str, str]) -> None:
    now = datetime.now(UTC)
    body = [
        {
            "labels": labels,
            "annotations": {"summary": labels["alertname"]},
            "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(minutes=5)).isoformat(),
        }
        for labels in alerts
    ]
    resp = requests.post(f"{am.url}/api/v2/alerts", json=body, timeout=10)
    assert resp.status_code == 200, resp.text


@pytest.mark.integration
def test_inhibition_on_a_real_alertmanager(
    built_alertmanager: tuple[AlertmanagerServer, WebhookReceiver, AlertingConfig],
) -> None:
    am, receiver, cfg = built_alertmanager
    vm = {"area": "compute", "severity": "critical"}
    posted = time.monotonic()
    _post(
        am,
        {"alertname": "HypervisorHostDown", "host": "kvm1", **vm},
        {"alertname": "VMDownUnexpectedly", "host": "kvm1", "vm_id": "a", **vm},
        {"alertname": "LibvirtExporterDown", "host": "kvm1", **vm},
        {"alertname": "VMDownUnexpectedly", "host": "kvm2", "vm_id": "b", **vm},
        {"alertname": "LibvirtUnhealthy", "host": "kvm3", **vm},
        {"alertname": "VMCrashed", "host": "kvm3", "vm_id": "c", **vm},
        {"alertname": "CephHealthError", "area": "storage", "severity": "critical"},
        {"alertname": "CephOSDDown", "area": "storage", "severity": "warning"},
        {"alertname": "CephPoolFull", "area": "storage", "severity": "critical"},
        {"alertname": "OVSDown", "host": "kvm4", "area": "network", "severity": "critical"},
        {"alertname": "VXLANTunnelDown", "host": "kvm4", "area": "network", "severity": "critical"},
        {"alertname": "InventoryStale", "zone": "z1", "area": "platform", "severity": "warning"},
        {
            "alertname": "ExporterInventoryStale",
            "host": "kvm5",
            "zone": "z1",
            "area": "platform",
            "severity": "warning",
        },
        {
            "alertname": "ExporterInventoryStale",
            "host": "kvm6",
            "zone": "z2",
            "area": "platform",
            "severity": "warning",
        },
    )
    expect_suppressed = {
        ("VMDownUnexpectedly", "kvm1"),
        ("LibvirtExporterDown", "kvm1"),
        ("VMCrashed", "kvm3"),
        ("CephOSDDown", ""),
        ("VXLANTunnelDown", "kvm4"),
        ("ExporterInventoryStale", "kvm5"),
    }
    seen: list[tuple[dict[tuple[str, str], str], set[tuple[str, str]]]] = []

    def inhibited() -> bool:
        state = {
            (a["labels"]["alertname"], a["labels"].get("host", "")): a["status"]["state"]
            for a in am.alerts()
        }
        seen.append((state, {k for k, v in state.items() if v == "suppressed"}))
        return seen[-1][1] == expect_suppressed

    wait_until(inhibited, timeout=20, interval=0.2)
    state, suppressed = seen[-1]
    assert suppressed == expect_suppressed
    assert state[("VMDownUnexpectedly", "kvm2")] == "active"
    assert state[("CephPoolFull", "")] == "active"  # a critical is not a "warning"
    # What reaches the receiver is exactly what is not inhibited, routed by area/severity.
    # The post made every group, and each sends group_wait after it was made: within that
    # window (and a margin for the hops) every alert not inhibited arrives, which proves the
    # window long enough, and no inhibited one may.
    window_end = posted + cfg.group_wait_seconds + PAGE_MARGIN_SECONDS
    expected = set(state) - expect_suppressed

    def delivered() -> set[tuple[str, str]]:
        return {
            (a["labels"]["alertname"], a["labels"].get("host", ""))
            for n in receiver.snapshot()
            for a in n.alerts("firing")
        }

    wait_until(lambda: expected <= delivered(), timeout=max(window_end - time.monotonic(), 0.0))
    assert expected <= delivered(), f"not delivered in the window: {expected - delivered()}"
    # the rest of the window: an inhibited alert would arrive now, if ever
    wait_until(
        lambda: delivered() & expect_suppressed,
        timeout=max(window_end - time.monotonic(), 0.0),
        interval=0.1,
    )
    assert delivered() == expected
    receivers = {n.payload["receiver"] for n in receiver.snapshot()}
    assert receivers == {
        "compute-critical",
        "storage-critical",
        "network-critical",
        "platform-warning",
    }


def test_secrets_never_land_in_an_existing_wider_file(tmp_path: Path) -> None:
    """An alertmanager.yml left 0644 by someone is replaced by a new 0600 file (another inode),
    never rewritten in place while still readable by others."""
    out = tmp_path / "out"
    (out / "rules").mkdir(parents=True)
    old = out / "alertmanager.yml"
    old.write_text("old: config\n")
    old.chmod(0o644)
    before = old.stat().st_ino
    cfg = parse_config(
        {"alerting": {"webhook": {"url": "https://chat.example/hook/t"}}}, "test"
    ).alerting
    built = build(out, cfg)
    assert built.alertmanager.stat().st_ino != before
    assert stat.S_IMODE(built.alertmanager.stat().st_mode) == 0o600
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_an_unwritable_out_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "zcp_obs", "alerts", "build", "--out", str(blocker / "out")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"Error: cannot write {blocker / 'out' / 'rules'}: Not a directory"
    ]


def test_durations_are_not_truncated(tmp_path: Path) -> None:
    from alerts.alertmanager import _seconds

    assert [_seconds(v) for v in (1.5, 0.25, 30, 3600, 0.0004)] == [
        "1s500ms",
        "250ms",
        "30s",
        "3600s",
        "0s",
    ]
    cfg = parse_config(
        {"alerting": {"group_wait_seconds": 1.5, "group_interval_seconds": 2.25}}, "test"
    ).alerting
    am = yaml.safe_load(build(tmp_path / "out", cfg).alertmanager.read_text())
    assert am["route"]["group_wait"] == "1s500ms"
    assert am["route"]["group_interval"] == "2s250ms"


def test_a_tenants_vm_is_one_series_whichever_source_reports_it(
    tmp_path: Path, tools: None
) -> None:
    """zcp_vm_info comes from the inventory service and from the libvirt exporter, whose
    targets carry host and zone of their own (the VM's become exported_host/exported_zone):
    the tenant's VM list holds each VM once, with its own host and zone."""
    built = build(tmp_path, AlertingConfig())
    ident = (
        'vm_id="vm-1",instance_name="i-2-10-VM",vm_name="web-1",account_id="acct-1",'
        'account="acme",domain_id="d1",domain_path="ROOT",project_id="",project="",'
        'service_offering="small",vcpus="1",memory_bytes="1073741824"'
    )
    case = {
        "rule_files": [str(built.rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": f'zcp_vm_info{{job="zcp-inventory",instance="inv:9180",'
                        f'{ident},host="kvm01",zone="zone1"}}',
                        "values": "1x5",
                    },
                    {
                        "series": f'zcp_vm_info{{job="libvirt",instance="kvm01:9177",{ident},'
                        'host="kvm01",zone="zone1",exported_host="kvm01",exported_zone="zone1"}',
                        "values": "1x5",
                    },
                ],
                "promql_expr_test": [
                    {
                        "expr": "tenant:zcp_vm_info:max",
                        "eval_time": "3m",
                        "exp_samples": [
                            {
                                "labels": f'tenant:zcp_vm_info:max{{{ident},host="kvm01",'
                                'zone="zone1",tenant="acct-1"}',
                                "value": 1,
                            }
                        ],
                    },
                    {
                        "expr": "count(tenant:zcp_vm_info:max)",
                        "eval_time": "3m",
                        "exp_samples": [{"labels": "{}", "value": 1}],
                    },
                ],
            }
        ],
    }
    test_file = tmp_path / "vm_info_test.yml"
    test_file.write_text(yaml.safe_dump(case))
    done = subprocess.run(
        ["promtool", "test", "rules", str(test_file)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_promises_pass_promtool_as_a_one_node_lab_configures_them(
    tmp_path: Path, tools: None
) -> None:
    """The promises' cases are made from the configured bounds: a lab's own pass too."""
    lab = PromisesConfig(
        production_offerings="prod\\..*",
        cpu_overcommit_max=2.5,
        memory_overcommit_max=1.2,
        steal_max=0.3,
        ceph_pool_size=1,
        ceph_pool_min_size=1,
        ceph_failure_domain="osd",
        ceph_min_hosts=1,
        ceph_self_heal_minutes=5,
        storage_media={"fast": "ssd", "flow": "ssd", "bulk": "hdd"},
        overlay_mtu=1450,
    )
    build(tmp_path, AlertingConfig(promises=lab))
    assert "promtool test rules" in check(tmp_path)
    rules = yaml.safe_load((tmp_path / "rules/zcp.rules.yml").read_text())
    exprs = {r.get("alert"): r["expr"] for g in rules["groups"] for r in g["rules"]}
    assert exprs["HostVCPUOvercommitted"].startswith("host:vcpu_overcommit:ratio > 2.5 ")
    assert exprs["CephPoolReplicasBelowPromise"] == "ceph_pool_size < 1"
    assert exprs["TunnelUnderlayMTUTooSmall"] == "ovs_tunnel_underlay_mtu_bytes < 1500"
    assert 'service_offering=~"prod\\\\..*"' in exprs["ProductionVMCPUStarved"]


def test_overcommit_pages_only_where_a_production_vm_runs(tmp_path: Path, tools: None) -> None:
    """The same overcommitted host is quiet while only other plans run on it."""
    promises = PromisesConfig(production_offerings="prod\\..*")
    everything = groups(promises)
    compute = next(g for g in everything if g.name == "promises-compute")
    rest = [g for g in everything if g is not compute]
    alert = next(a for a in compute.alerts if a.name == "HostVCPUOvercommitted")
    (firing, _quiet) = alert.cases
    other_plans = {
        k.replace('service_offering="prod.medium"', 'service_offering="dev.small"'): v
        for k, v in firing.series.items()
    }
    assert other_plans != firing.series
    changed = dataclasses.replace(
        alert, cases=(*alert.cases, Case(other_plans, note="other plans"))
    )
    group = dataclasses.replace(
        compute, rules=tuple(changed if r is alert else r for r in compute.rules)
    )
    build(tmp_path, AlertingConfig(promises=promises), groups=[group, *rest])
    assert "promtool test rules" in check(tmp_path)
    # and the proof can fail: the same series counted as production would fire
    wrong = dataclasses.replace(alert, cases=(*alert.cases, Case(firing.series)))
    group = dataclasses.replace(
        compute, rules=tuple(wrong if r is alert else r for r in compute.rules)
    )
    build(tmp_path, AlertingConfig(promises=promises), groups=[group, *rest])
    with pytest.raises(ZcpError, match="HostVCPUOvercommitted case 2"):
        check(tmp_path)


@pytest.mark.parametrize(
    ("promises", "message"),
    [
        ({"ceph_pool_size": 2, "ceph_pool_min_size": 3}, "must not exceed ceph_pool_size"),
        ({"ceph_failure_domain": "disk"}, "must be one of osd, host"),
        ({"production_offerings": "prod("}, "not a regular expression"),
        ({"storage_media": {"gold": "nvme"}}, "storage_media.gold"),
        ({"s3_endpoints": {"zone1": "rgw:8080"}}, "must start with http"),
    ],
)
def test_a_bad_promise_is_one_line(promises: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        parse_config({"alerting": {"promises": promises}}, "region.yaml")
    assert "\n" not in str(err.value) and "alerting.promises" in str(err.value)
