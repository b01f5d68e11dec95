"""``zcp-obs alerts build`` and ``zcp-obs alerts check``: write the files, then prove them with
Prometheus's and Alertmanager's own tools (promtool, amtool)."""

from __future__ import annotations

import json
import logging
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import astuple, dataclass
from pathlib import Path

import yaml

from alerts.alertmanager import alertmanager_config, route_tests
from alerts.blackbox import blackbox_config, scrape_job
from alerts.model import Group, promtool_tests, rule_file
from alerts.rules import groups as all_groups
from zcp.binaries import require
from zcp.config import AlertingConfig
from zcp.errors import ZcpError
from zcp.files import write_atomic

log = logging.getLogger(__name__)

BLACKBOX = "blackbox.yml"
S3_PROBE_JOB = "prometheus.s3-probe.yml"
RULES = "rules/zcp.rules.yml"
TESTS = "rules/zcp.tests.yml"
ALERTMANAGER = "alertmanager.yml"
ROUTE_TESTS = "alertmanager.route-tests.json"

# extra promtool tests of the recording rules: tenant labels come from zcp_vm_info, and a
# tenant's series never carry another tenant's id
RECORDING_TESTS = [
    {
        "name": "tenant recording rules join counters to their owner",
        "interval": "1m",
        "input_series": [
            {
                "series": 'zcp_vm_info{job="zcp-inventory",vm_id="vm-a",account_id="acct-a",'
                'account="acme"}',
                "values": "1x10",
            },
            {
                "series": 'zcp_vm_info{job="libvirt",vm_id="vm-a",account_id="acct-a",'
                'account="acme"}',
                "values": "1x10",
            },
            {
                "series": 'zcp_vm_info{job="zcp-inventory",vm_id="vm-b",account_id="acct-b",'
                'account="globex"}',
                "values": "1x10",
            },
            {"series": 'zcp_vm_info{job="libvirt",vm_id="vm-x",account_id=""}', "values": "1x10"},
            {
                "series": 'libvirt_domain_cpu_time_seconds_total{job="libvirt",vm_id="vm-a"}',
                "values": "0+60x10",
            },
            {
                "series": 'libvirt_domain_cpu_time_seconds_total{job="libvirt",vm_id="vm-b"}',
                "values": "0+30x10",
            },
            {
                "series": 'libvirt_domain_cpu_time_seconds_total{job="libvirt",vm_id="vm-x"}',
                "values": "0+30x10",
            },
            # storage: two fast volumes of acct-a, a bulk one of acct-b, one nobody owns
            {
                "series": 'zcp_volume_info{job="zcp-inventory",volume_id="v1",account_id="acct-a"}',
                "values": "1x10",
            },
            {
                "series": 'zcp_volume_info{job="zcp-ceph",volume_id="v1",account_id="acct-a"}',
                "values": "1x10",
            },
            {
                "series": 'zcp_volume_info{job="zcp-inventory",volume_id="v2",account_id="acct-a"}',
                "values": "1x10",
            },
            {
                "series": 'zcp_volume_info{job="zcp-inventory",volume_id="v3",account_id="acct-b"}',
                "values": "1x10",
            },
            {
                "series": 'ceph_rbd_image_used_bytes{job="zcp-ceph",volume_id="v1",'
                'storage_class="fast",pool="rbd-fast",image="i1"}',
                "values": "100x10",
            },
            {
                "series": 'ceph_rbd_image_used_bytes{job="zcp-ceph",volume_id="v2",'
                'storage_class="fast",pool="rbd-fast",image="i2"}',
                "values": "200x10",
            },
            {
                "series": 'ceph_rbd_image_used_bytes{job="zcp-ceph",volume_id="v3",'
                'storage_class="bulk",pool="rbd-bulk",image="i3"}',
                "values": "50x10",
            },
            {
                "series": 'ceph_rbd_image_used_bytes{job="zcp-ceph",volume_id="",'
                'storage_class="fast",pool="rbd-fast",image="stray"}',
                "values": "999x10",
            },
            {
                "series": 'ceph_rgw_user_stored_bytes{job="zcp-ceph",user="acct-a",account_id="acct-a"}',
                "values": "1000x10",
            },
            {
                "series": 'ceph_rgw_user_stored_bytes{job="zcp-ceph",user="ops",account_id=""}',
                "values": "5x10",
            },
            # what the tenant dashboards read per VM, volume, bucket and month
            {
                "series": 'libvirt_domain_vcpus{job="libvirt",vm_id="vm-a",host="kvm1"}',
                "values": "2x10",
            },
            {
                "series": 'libvirt_domain_vcpus{job="libvirt",vm_id="vm-x",host="kvm1"}',
                "values": "8x10",
            },
            {
                "series": 'ceph_rbd_image_provisioned_bytes{job="zcp-ceph",volume_id="v1",'
                'storage_class="fast",pool="rbd-fast",image="i1"}',
                "values": "1000x10",
            },
            {
                "series": 'ceph_rgw_bucket_stored_bytes{job="zcp-ceph",bucket="site",owner="acct-a",'
                'account_id="acct-a"}',
                "values": "700x10",
            },
            {
                "series": 'ceph_rgw_bucket_stored_bytes{job="zcp-ceph",bucket="tmp",owner="ops",'
                'account_id=""}',
                "values": "9x10",
            },
            {
                "series": 'zcp_metering_usage{job="zcp-metering",account_id="acct-a",'
                'meter="vm.running_hours",unit="Hours",month="2026-11"}',
                "values": "6x10",
            },
            {
                "series": 'zcp_metering_usage{job="zcp-metering",account_id="acct-b",'
                'meter="vm.running_hours",unit="Hours",month="2026-11"}',
                "values": "3x10",
            },
        ],
        "promql_expr_test": [
            {
                "expr": "tenant:libvirt_domain_cpu_time_seconds:rate5m",
                "eval_time": "6m",
                "exp_samples": [
                    {
                        "labels": "tenant:libvirt_domain_cpu_time_seconds:rate5m"
                        '{tenant="acct-a",vm_id="vm-a"}',
                        "value": 1,
                    },
                    {
                        "labels": "tenant:libvirt_domain_cpu_time_seconds:rate5m"
                        '{tenant="acct-b",vm_id="vm-b"}',
                        "value": 0.5,
                    },
                ],
            },
            {
                "expr": "tenant:ceph_rbd_image_used_bytes:sum",
                "eval_time": "6m",
                "exp_samples": [
                    {
                        "labels": "tenant:ceph_rbd_image_used_bytes:sum"
                        '{tenant="acct-a",storage_class="fast"}',
                        "value": 300,
                    },
                    {
                        "labels": "tenant:ceph_rbd_image_used_bytes:sum"
                        '{tenant="acct-b",storage_class="bulk"}',
                        "value": 50,
                    },
                ],
            },
            {
                "expr": "tenant:ceph_rgw_user_stored_bytes:sum",
                "eval_time": "6m",
                "exp_samples": [
                    {
                        "labels": 'tenant:ceph_rgw_user_stored_bytes:sum{tenant="acct-a"}',
                        "value": 1000,
                    }
                ],
            },
            {
                "expr": "tenant:libvirt_domain_vcpus:max",
                "eval_time": "6m",
                "exp_samples": [
                    {
                        "labels": 'tenant:libvirt_domain_vcpus:max{tenant="acct-a",vm_id="vm-a"}',
                        "value": 2,
                    }
                ],
            },
            {
                "expr": "tenant:ceph_rbd_image_provisioned_bytes:volume",
                "eval_time": "6m",
                "exp_samples": [
                    {
                        "labels": "tenant:ceph_rbd_image_provisioned_bytes:volume{"
                        'tenant="acct-a",volume_id="v1",storage_class="fast"}',
                        "value": 1000,
                    }
                ],
            },
            {
                "expr": "tenant:ceph_rgw_bucket_stored_bytes:max",
                "eval_time": "6m",
                "exp_samples": [
                    {
                        "labels": 'tenant:ceph_rgw_bucket_stored_bytes:max{tenant="acct-a",'
                        'bucket="site"}',
                        "value": 700,
                    }
                ],
            },
            {
                "expr": 'tenant:zcp_metering_usage:max{tenant="acct-a"}',
                "eval_time": "6m",
                "exp_samples": [
                    {
                        "labels": 'tenant:zcp_metering_usage:max{tenant="acct-a",'
                        'meter="vm.running_hours",unit="Hours",month="2026-11"}',
                        "value": 6,
                    }
                ],
            },
            {
                "expr": 'tenant:zcp_vm_info:max{tenant="acct-a"}',
                "eval_time": "6m",
                "exp_samples": [
                    {
                        "labels": 'tenant:zcp_vm_info:max{tenant="acct-a",vm_id="vm-a",'
                        'account_id="acct-a",account="acme"}',
                        "value": 1,
                    }
                ],
            },
        ],
    }
]


@dataclass
class Built:
    """Paths of what ``build`` wrote."""

    rules: Path
    tests: Path
    alertmanager: Path
    route_tests: Path
    blackbox: Path
    s3_probe_job: Path

    @classmethod
    def at(cls, out: Path) -> Built:
        """Where ``build`` writes into ``out``."""
        return cls(
            out / RULES,
            out / TESTS,
            out / ALERTMANAGER,
            out / ROUTE_TESTS,
            out / BLACKBOX,
            out / S3_PROBE_JOB,
        )


def build(
    out: Path,
    cfg: AlertingConfig,
    groups: Sequence[Group] | None = None,
    for_override: str | None = None,
) -> Built:
    """Write the rule file, its promtool tests, ``alertmanager.yml`` (0600: it holds the
    receivers' secrets) and the routing test cases into ``out``.

    ``for_override`` replaces every ``for:`` (end-to-end tests only; the promtool tests are then
    not written, since they check the real ``for:``).
    """
    groups = list(groups if groups is not None else all_groups(cfg.promises))
    names = [a.name for g in groups for a in g.alerts]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ZcpError(f"duplicate alert names: {', '.join(duplicates)}")
    built = Built.at(out)
    try:
        (out / "rules").mkdir(parents=True, exist_ok=True)
        write_atomic(built.rules, _yaml(rule_file(groups, cfg.runbook_base_url, for_override)))
        if for_override is None:
            tests = promtool_tests(groups, [Path(RULES).name], cfg.runbook_base_url)
            tests["tests"] += RECORDING_TESTS
            write_atomic(built.tests, _yaml(tests))
        # the receivers' secrets: a new file, 0600 from its creation, renamed over the old one (an
        # existing file's wider mode never applies to them)
        write_atomic(built.alertmanager, _yaml(alertmanager_config(cfg)), 0o600)
        # the S3 probe: the blackbox exporter's module, and the operator Prometheus's job
        # (a scrape_configs entry to add) probing every configured endpoint through it
        promises = cfg.promises
        write_atomic(built.blackbox, _yaml(blackbox_config(promises.s3_probe_timeout_seconds)))
        job = scrape_job(promises.blackbox_exporter, promises.s3_endpoints)
        write_atomic(built.s3_probe_job, _yaml([job]))
        write_atomic(
            built.route_tests,
            json.dumps(
                [{"labels": labels, "receiver": receiver} for labels, receiver in route_tests()],
                indent=1,
            )
            + "\n",
        )
    except OSError as exc:
        raise ZcpError(f"cannot write {exc.filename or out}: {exc.strerror}") from None
    log.info("alerts built", extra={"out": str(out), "alerts": len(names), "groups": len(groups)})
    return built


def _yaml(doc: object) -> str:
    return (
        "# generated by `zcp-obs alerts build`: edit alerts/*.py, not this file\n"
        + yaml.safe_dump(doc, sort_keys=False, width=100, allow_unicode=True)
    )


def check(
    out: Path, progress: Callable[[str], None] = lambda _m: None, timeout: float = 300
) -> list[str]:
    """Run promtool and amtool on what ``build`` wrote; one line per passed check.
    Raises ZcpError with the tool's own output on the first failure, or naming the tool that
    did not finish within ``timeout`` seconds."""
    promtool = require("promtool", "prometheus")
    amtool = require("amtool", "prometheus-alertmanager")
    done = []

    def run(label: str, argv: list[str], cwd: Path | None = None) -> None:
        progress(label)
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ZcpError(f"{label} did not finish within {timeout:g} s") from None
        if proc.returncode != 0:
            raise ZcpError(f"{label} failed:\n{(proc.stdout + proc.stderr).strip()}")
        done.append(label)

    for path in astuple(Built.at(out)):
        if not path.exists():
            raise ZcpError(f"{path} is missing: run `zcp-obs alerts build --out {out}` first")
    run("promtool check rules", [promtool, "check", "rules", str(out / RULES)])
    run("promtool test rules", [promtool, "test", "rules", Path(TESTS).name], cwd=out / "rules")
    run("amtool check-config", [amtool, "check-config", str(out / ALERTMANAGER)])
    blackbox = require("prometheus-blackbox-exporter", "prometheus-blackbox-exporter")
    run(
        "blackbox exporter --config.check",
        [blackbox, "--config.check", f"--config.file={out / BLACKBOX}"],
    )
    # the S3 probe's job, checked as a Prometheus config holding it
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "prometheus.yml"
        jobs = yaml.safe_load((out / S3_PROBE_JOB).read_text())
        config.write_text(yaml.safe_dump({"scrape_configs": jobs}))
        run("promtool check config (s3-probe job)", [promtool, "check", "config", str(config)])
    cases = json.loads((out / ROUTE_TESTS).read_text())
    for case in cases:
        labels = [f"{k}={v}" for k, v in case["labels"].items()]
        run(
            f"route {' '.join(labels)} -> {case['receiver']}",
            [
                amtool,
                "config",
                "routes",
                "test",
                f"--config.file={out / ALERTMANAGER}",
                f"--verify.receivers={case['receiver']}",
                *labels,
            ],
        )
    return done
