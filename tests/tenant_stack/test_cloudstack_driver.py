"""The ``cloudstack`` driver against the CloudStack API test server (it signs, runs async jobs
and answers as CloudStack's API docs say): deploy with cloud-init user data, find by tag,
stop on retirement, destroy with expunge on purge, a failed job, a timeout, the size limit; and
the desired tenants read from CloudStack account details."""

from __future__ import annotations

import base64
import gzip
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.cloudstack_sim import CloudStackSim
from tenant_stack.cloudstack import VERSION_TAG, CloudStackDriver
from tenant_stack.reconcile import Reconciler, accounts_from_cloudstack
from tenant_stack.render import Tenant
from tenant_stack.state import load
from tests.support import ADMIN_KEY, ADMIN_SECRET
from zcp.config import (
    CloudStackConfig,
    CloudStackDriverConfig,
    Config,
    GateConfig,
    TenantsConfig,
)
from zcp.inventory.cloudstack import make_client

A = "7b743d5e-a9e5-5cfe-8cbc-52b3cd725c70"  # acme in the demo inventory
B = "c9272bf6-38b9-5508-8930-3aba36137011"  # globex


def api(sim: CloudStackSim) -> CloudStackConfig:
    return CloudStackConfig.model_validate(
        {"url": sim.url, "api_key": ADMIN_KEY, "secret_key": ADMIN_SECRET}
    )


def setup(sim: CloudStackSim, tmp: Path, **driver: Any) -> tuple[TenantsConfig, CloudStackDriver]:
    cs = CloudStackDriverConfig(
        zone_id="z1",
        template_id="debian-12",
        service_offering_id="small",
        network_ids=("net-1",),
        job_timeout_seconds=driver.pop("job_timeout_seconds", 30),
        poll_interval_seconds=0.05,
        **driver,
    )
    cfg = TenantsConfig(
        state_dir=tmp / "state",
        driver="cloudstack",
        cloudstack=cs,
        accounts={A: "standard", B: "standard"},
        gate_url="https://gate.example.com:9480",
        gate=GateConfig(tokens_file=tmp / "tokens.yaml"),
    )
    return cfg, CloudStackDriver(cfg.state_dir, api(sim), cs)


def want(cfg: TenantsConfig) -> Any:
    return lambda: {a: Tenant(a, f"name-{a[:4]}", t) for a, t in (cfg.accounts or {}).items()}


def cloud_config(vm: dict[str, Any]) -> dict[str, Any]:
    text = gzip.decompress(base64.b64decode(vm["userdata"])).decode()
    assert text.startswith("#cloud-config\n")
    return yaml.safe_load(text)


def test_deploy_find_retire_purge(cloudstack: CloudStackSim, tmp_path: Path) -> None:
    cfg, driver = setup(cloudstack, tmp_path)
    rec = Reconciler(cfg, want(cfg), driver=driver)
    out = rec.run()
    assert [a.kind for a in out.actions] == ["create", "create"] and not out.failed
    vms = {t: driver.find(t) for t in (A, B)}
    assert all(vm and vm["state"] == "Running" for vm in vms.values())
    raw = next(
        v for v in cloudstack.state.objects["listVirtualMachines"] if v["id"] == vms[A]["id"]
    )  # type: ignore[index]
    assert len(raw["userdata"]) <= 32768
    doc = cloud_config(raw)
    files = {f["path"]: f for f in doc["write_files"]}
    root = f"/var/lib/zcp-obs/tenants/tenants/{A}"
    prom = yaml.safe_load(files[f"{root}/prometheus/prometheus.yml"]["content"])
    assert prom["scrape_configs"][0]["static_configs"][0]["targets"] == ["gate.example.com:9480"]
    assert prom["scrape_configs"][0]["scheme"] == "https"
    token = files[f"{root}/prometheus/gate.token"]
    assert token["permissions"] == "0600" and token["defer"] is True
    assert (
        token["content"].strip()
        == (tmp_path / "state/tenants" / A / "prometheus/gate.token").read_text().strip()
    )
    assert "/etc/systemd/system/zcp-obs-tenant-prometheus@.service" in files
    assert ["systemctl", "enable", "--now", f"zcp-obs-tenant-prometheus@{A}.service"] in doc[
        "runcmd"
    ]
    assert "prometheus" in doc["packages"]
    tags = {t["key"]: t["value"] for t in vms[A]["tags"]}  # type: ignore[index]
    assert (
        tags["zcp-tenant"] == A
        and tags[VERSION_TAG] == load(cfg.state_dir).tenants[A].config_version
    )
    # a second run: nothing to do, no API call that changes anything
    before = len(cloudstack.requests)
    again = rec.run()
    assert [a.kind for a in again.actions] == ["keep", "keep"]
    changing = [
        r["command"]
        for r in cloudstack.requests[before:]
        if not r["command"].startswith(("list", "query"))
    ]
    assert changing == []
    # retired: stopped, kept
    fewer = cfg.model_copy(update={"accounts": {A: "standard"}})
    clock = [1.0e9]
    rec2 = Reconciler(fewer, want(fewer), driver=driver, clock=lambda: clock[0])
    assert {a.tenant: a.kind for a in rec2.run().actions}[B] == "retire"
    assert driver.find(B)["state"] == "Stopped"  # type: ignore[index]
    clock[0] += 31 * 86400
    assert {a.tenant: a.kind for a in rec2.run().actions}[B] == "purge"
    assert driver.find(B) is None
    destroy = [r for r in cloudstack.requests if r["command"] == "destroyVirtualMachine"]
    assert destroy and destroy[-1]["expunge"] == "true"


def test_a_changed_stack_is_new_user_data_and_a_restart(
    cloudstack: CloudStackSim, tmp_path: Path
) -> None:
    cfg, driver = setup(cloudstack, tmp_path)
    Reconciler(cfg, want(cfg), driver=driver).run()
    longer = cfg.model_copy(
        update={
            "tiers": {"standard": cfg.tiers["standard"].model_copy(update={"retention": "90d"})}
        }
    )
    out = Reconciler(longer, want(longer), driver=driver).run()
    assert {a.kind for a in out.actions} == {"update"} and not out.failed
    vm = driver.find(A)
    raw = next(v for v in cloudstack.state.objects["listVirtualMachines"] if v["id"] == vm["id"])  # type: ignore[index]
    env = next(f for f in cloud_config(raw)["write_files"] if f["path"].endswith("prometheus.env"))
    assert "RETENTION=90d" in env["content"] and vm["state"] == "Running"  # type: ignore[index]
    commands = [r["command"] for r in cloudstack.requests]
    assert "stopVirtualMachine" in commands and "startVirtualMachine" in commands


def test_a_failed_job_reports_cloudstacks_errortext(
    cloudstack: CloudStackSim, tmp_path: Path
) -> None:
    cfg, driver = setup(cloudstack, tmp_path)
    cloudstack.fail_deploy = "Insufficient capacity in zone z1"
    out = Reconciler(cfg, want(cfg), driver=driver).run()
    assert set(out.failed) == {A, B}
    assert "Insufficient capacity in zone z1" in out.failed[A] and "\n" not in out.failed[A]
    cloudstack.fail_deploy = None  # the next run converges
    assert not Reconciler(cfg, want(cfg), driver=driver).run().failed
    assert driver.find(A) is not None


def test_a_job_that_never_ends_times_out(cloudstack: CloudStackSim, tmp_path: Path) -> None:
    cfg, driver = setup(cloudstack, tmp_path, job_timeout_seconds=0.5)
    cloudstack.job_seconds = 3600
    out = Reconciler(cfg, want(cfg), driver=driver).run()
    assert "not done within 0.5 s" in out.failed[A]


def test_user_data_over_the_limit_is_refused_before_deploying(
    cloudstack: CloudStackSim, tmp_path: Path
) -> None:
    cfg, driver = setup(cloudstack, tmp_path, userdata_max_length=1024)
    out = Reconciler(cfg, want(cfg), driver=driver).run()
    assert "over vm.userdata.max.length 1024" in out.failed[A]
    assert not [r for r in cloudstack.requests if r["command"] == "deployVirtualMachine"]


def test_desired_tenants_from_account_details(cloudstack: CloudStackSim) -> None:
    client = make_client(api(cloudstack))
    client.updateAccount(id=A, **{"accountdetails[0].zcp.observability": "standard"})
    client.updateAccount(id=B, **{"accountdetails[0].zcp.observability": "platinum"})  # unknown
    cfg = Config.model_validate({}).model_copy(update={"cloudstack": api(cloudstack)})
    got = accounts_from_cloudstack(cfg)
    assert set(got) == {A} and got[A].name == "acme" and got[A].tier == "standard"


def test_no_account_list_and_no_cloudstack_is_one_line() -> None:
    with pytest.raises(Exception, match=r"no tenants\.accounts list and no cloudstack section"):
        accounts_from_cloudstack(Config())
