"""Upload through grafana-client against a local server that follows Grafana's HTTP API
contract (lab/grafana_sim.py): folders by uid, /api/dashboards/db with overwrite, folderUid and
a message, the token from the config, a tenant's org; every refusal is one line naming the
dashboard."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from lab.grafana_sim import GrafanaSim, GrafanaState
from lab.procs import free_port

OPERATOR = 7


@pytest.fixture
def grafana() -> Iterator[GrafanaSim]:
    state = GrafanaState(
        tokens={"editor-1": (1, "Editor"), "viewer-1": (1, "Viewer"), "tenant-5": (5, "Editor")}
    )
    with GrafanaSim(state) as sim:
        yield sim


def upload(
    tmp_path: Path, url: str, token: str, *args: str, org_id: int | None = None
) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "zcp.yaml"
    grafana: dict[str, object] = {
        "url": url,
        "token": token,
        "folder_uid": "zcp-ops",
        "folder_title": "ZCP operations",
        "timeout_seconds": 3,
    }
    if org_id is not None:
        grafana["org_id"] = org_id
    cfg.write_text(yaml.safe_dump({"dashboards": {"grafana": grafana}}))
    return subprocess.run(
        [sys.executable, "-m", "zcp_obs", "--config", str(cfg), "dashboards", "upload", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_upload_creates_the_folder_and_every_dashboard(grafana: GrafanaSim, tmp_path: Path) -> None:
    first = upload(tmp_path, grafana.url, "editor-1", "--message", "release 1")
    assert first.returncode == 0, first.stderr
    org = grafana.state.orgs[1]
    assert set(org.folders) == {"zcp-ops"} and org.folders["zcp-ops"]["title"] == "ZCP operations"
    assert len(org.dashboards) == OPERATOR
    vm = org.dashboards["zcp-vm"]
    assert vm["folderUid"] == "zcp-ops" and vm["message"] == "release 1"
    assert vm["dashboard"]["version"] == 1 and vm["dashboard"]["title"] == "ZCP / VM detail"
    assert "zcp-vm: version 1 " in first.stdout
    # again: the folder is found by uid (not created twice), every dashboard a new version
    again = upload(tmp_path, grafana.url, "editor-1")
    assert again.returncode == 0, again.stderr
    assert org.dashboards["zcp-vm"]["dashboard"]["version"] == 2
    creates = [r for r in grafana.state.requests if r[:2] == ("POST", "/api/folders")]
    assert len(creates) == 1


def test_a_tenant_org_gets_the_tenant_dashboards(grafana: GrafanaSim, tmp_path: Path) -> None:
    done = upload(tmp_path, grafana.url, "tenant-5", "--audience", "tenant", org_id=5)
    assert done.returncode == 0, done.stderr
    assert set(grafana.state.orgs[5].dashboards) == {
        "zcp-tenant-overview",
        "zcp-tenant-vm",
        "zcp-tenant-storage",
        "zcp-tenant-network",
        "zcp-tenant-usage",
    }
    assert 1 not in grafana.state.orgs
    assert {org for _m, _p, org in grafana.state.requests} == {5}
    # a token of one org cannot write into another
    other = upload(tmp_path, grafana.url, "tenant-5", "--audience", "tenant", org_id=6)
    assert other.returncode == 1
    assert other.stderr.strip().splitlines() == [
        f"Error: folder zcp-ops: Grafana at {grafana.url} refused the token (HTTP 401 "
        "Unauthorized: the token belongs to another org)"
    ]


def test_a_dashboard_changed_in_grafana_is_not_overwritten_unless_asked(
    grafana: GrafanaSim, tmp_path: Path
) -> None:
    assert upload(tmp_path, grafana.url, "editor-1").returncode == 0
    grafana.state.orgs[1].dashboards["zcp-hypervisor"]["dashboard"]["version"] = 9  # edited
    refused = upload(tmp_path, grafana.url, "editor-1", "--no-overwrite")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "Error: zcp-hypervisor: Grafana refused: HTTP 412 version-mismatch: The dashboard has "
        "been changed by someone else (changed in Grafana since: upload with overwrite to "
        "replace it, or rename the other dashboard)"
    ]
    replaced = upload(tmp_path, grafana.url, "editor-1")
    assert replaced.returncode == 0, replaced.stderr
    assert grafana.state.orgs[1].dashboards["zcp-hypervisor"]["dashboard"]["version"] == 10


def test_bad_tokens_and_an_unreachable_grafana_are_one_line(
    grafana: GrafanaSim, tmp_path: Path
) -> None:
    bad = upload(tmp_path, grafana.url, "nope")
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [
        f"Error: folder zcp-ops: Grafana at {grafana.url} refused the token (HTTP 401 Invalid "
        "API key)"
    ]
    viewer = upload(tmp_path, grafana.url, "viewer-1")
    assert viewer.returncode == 1
    lines = viewer.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "Error: folder zcp-ops: Grafana refused: HTTP 403 Access denied"
    )
    # the folder exists: a viewer is refused on the first dashboard, named
    grafana.state.orgs[1].folders["zcp-ops"] = {"uid": "zcp-ops", "title": "ZCP operations"}
    viewer = upload(tmp_path, grafana.url, "viewer-1")
    assert (
        viewer.stderr.strip()
        .splitlines()[0]
        .startswith("Error: zcp-cloud-overview: Grafana refused: HTTP 403 Access denied")
    )
    gone = upload(tmp_path, f"http://127.0.0.1:{free_port()}", "editor-1")
    assert gone.returncode == 1
    lines = gone.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "Error: folder zcp-ops: cannot reach Grafana at http://127.0.0.1:"
    )
    assert "Traceback" not in gone.stderr


def test_no_grafana_configured_is_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "zcp.yaml"
    cfg.write_text("{}\n")
    done = subprocess.run(
        [sys.executable, "-m", "zcp_obs", "--config", str(cfg), "dashboards", "upload"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "Error: no Grafana configured: set dashboards.grafana (url, token) in the config"
    ]


def test_name_and_folder_conflicts_are_named(grafana: GrafanaSim, tmp_path: Path) -> None:
    # another dashboard already has the title in the folder: 412 name-exists without overwrite
    assert upload(tmp_path, grafana.url, "editor-1").returncode == 0
    org = grafana.state.orgs[1]
    taken = org.dashboards.pop("zcp-network")
    org.dashboards["hand-made"] = {**taken, "dashboard": {**taken["dashboard"], "uid": "hand-made"}}
    refused = upload(tmp_path, grafana.url, "editor-1", "--no-overwrite")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "Error: zcp-network: Grafana refused: HTTP 412 name-exists: A dashboard with the same "
        "name in the folder already exists (changed in Grafana since: upload with overwrite "
        "to replace it, or rename the other dashboard)"
    ]
    # the folder title belongs to a folder with another uid: 409, then named
    grafana.state.orgs[2] = type(org)(
        folders={"other": {"uid": "other", "title": "ZCP operations"}}
    )
    grafana.state.tokens["org-2"] = (2, "Editor")
    clash = upload(tmp_path, grafana.url, "org-2")
    assert clash.returncode == 1
    assert clash.stderr.strip().splitlines() == [
        "Error: folder zcp-ops: Grafana refused: a folder titled 'ZCP operations' exists with "
        "another uid (set dashboards.grafana.folder_uid to it, or another folder_title)"
    ]
