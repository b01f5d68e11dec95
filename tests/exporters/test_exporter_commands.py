"""Every ``zcp-obs exporter`` command started from the YAML config alone (no flag but
``--config``), scraped, and stopped by SIGTERM; each logs under its own service name."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from lab.ceph import CephLab
from lab.libvirt import LibvirtLab
from lab.ovs import OvsLab
from lab.procs import free_port
from zcp.wait import wait_until

pytestmark = pytest.mark.integration


def serve_scrape_stop(
    config: dict[str, object], tmp_path: Path, name: str, ready: str
) -> list[dict[str, object]]:
    """Run ``zcp-obs exporter <name>`` with ``config`` only, wait for ``ready`` in its
    exposition, SIGTERM it; its log lines (it must have exited 0)."""
    section = config["exporters"][name]  # type: ignore[index]
    port = free_port()
    section["listen"] = f"127.0.0.1:{port}"
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(
        [sys.executable, "-m", "zcp_obs", "--config", str(path), "exporter", name],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def answered() -> bool:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                return ready in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            except requests.RequestException:
                return False

        assert wait_until(answered, 60, 0.3), f"{ready!r} never appeared"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    unit = "zcp-obs-inventory" if name == "inventory" else f"zcp-obs-{name}-exporter"
    assert {line["service"] for line in lines} == {unit}
    msgs = [line["msg"] for line in lines]
    assert f"{name} exporter listening" in msgs and f"{name} exporter stopping" in msgs
    return lines


def test_inventory_service_command(tmp_path: Path) -> None:
    serve_scrape_stop(
        {"exporters": {"inventory": {}}}, tmp_path, "inventory", 'zcp_vm_state{account="acme"'
    )


def test_libvirt_command(libvirt_lab: LibvirtLab, tmp_path: Path) -> None:
    libvirt_lab.create_guest("i-2-90-VM", "7d1f9d0e-1111-4e7e-9d51-0a0000000090")
    try:
        serve_scrape_stop(
            {"exporters": {"libvirt": {"uri": libvirt_lab.uri, "hostname": "kvm-test"}}},
            tmp_path,
            "libvirt",
            'libvirt_domain_state{instance_name="i-2-90-VM"',
        )
    finally:
        libvirt_lab.destroy_guest("i-2-90-VM")


def test_ovs_command(ovs_lab: OvsLab, tmp_path: Path) -> None:
    serve_scrape_stop(
        {
            "exporters": {
                "ovs": {
                    "db": ovs_lab.db,
                    "rundir": str(ovs_lab.workdir),
                    "vswitchd_ctl": str(ovs_lab.vswitchd_ctl),
                }
            }
        },
        tmp_path,
        "ovs",
        "ovs_up 1.0",
    )


def test_ceph_command(ceph_lab: CephLab, tmp_path: Path) -> None:
    serve_scrape_stop(
        {
            "exporters": {
                "ceph": {
                    "conf": str(ceph_lab.conf),
                    "keyring": str(ceph_lab.keyring),
                    "rgw_endpoint": ceph_lab.rgw_url,
                }
            }
        },
        tmp_path,
        "ceph",
        'ceph_exporter_source_up{source="df"} 1.0',
    )


def test_a_flag_overrides_the_config_and_a_bad_value_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"exporters": {"ovs": {"db": "unix:/nonexistent"}}}))
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "zcp_obs",
            "--config",
            str(path),
            "exporter",
            "ovs",
            "--db",
            "nonsense",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1] == (
        "Error: invalid config (command line): db: 'nonsense' is not an OVSDB remote "
        "(unix:PATH, tcp:IP:PORT)"
    )
    path.write_text(yaml.safe_dump({"exporters": {"libvirt": {"listen": "nowhere"}}}))
    bad = subprocess.run(
        [sys.executable, "-m", "zcp_obs", "--config", str(path), "exporter", "libvirt"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip() == (
        f"Error: invalid config {path}: exporters.libvirt.listen: 'nowhere' is not HOST:PORT"
    )


def test_a_port_in_use_is_one_line() -> None:
    import socket
    import subprocess
    import sys

    taken = socket.socket()
    taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "zcp_obs",
                "exporter",
                "inventory",
                "--listen",
                f"127.0.0.1:{port}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        taken.close()
    assert done.returncode == 1
    lines = [line for line in done.stderr.strip().splitlines() if not line.startswith("{")]
    assert lines == [
        f"Error: inventory exporter: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]
    assert "Traceback" not in done.stderr
