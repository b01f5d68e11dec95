"""Grafana file provisioning for a stack (the tenant stacks use it): a dashboards provider YAML
(``provisioning/dashboards/zcp.yaml``) and the JSON it points at, per Grafana's provisioning
docs: ``apiVersion: 1``, one ``file`` provider with its folder, deletion disabled, no UI
updates (the files are the source of truth)."""

from __future__ import annotations

from pathlib import Path

import yaml

from dashboards.build import Built, DashboardError, encode
from zcp.files import write_atomic


def provision(
    built: list[Built], out: Path, json_dir: Path, folder: str, folder_uid: str, org_id: int = 1
) -> list[Path]:
    """Write ``out/provisioning/dashboards/zcp.yaml`` and each dashboard into ``json_dir``
    (the path Grafana will read: absolute in the provider); the paths written."""
    written = []
    try:
        for b in built:
            path = json_dir / b.filename
            write_atomic(path, encode(b.doc))
            written.append(path)
    except OSError as exc:
        raise DashboardError(f"cannot write {exc.filename or json_dir}: {exc.strerror}") from None
    provider = {
        "apiVersion": 1,
        "providers": [
            {
                "name": "zcp",
                "orgId": org_id,
                "folder": folder,
                "folderUid": folder_uid,
                "type": "file",
                "disableDeletion": True,
                "allowUiUpdates": False,
                "updateIntervalSeconds": 60,
                "options": {"path": str(json_dir), "foldersFromFilesStructure": False},
            }
        ],
    }
    yaml_path = out / "provisioning" / "dashboards" / "zcp.yaml"
    try:
        write_atomic(yaml_path, yaml.safe_dump(provider, sort_keys=False))
    except OSError as exc:
        raise DashboardError(f"cannot write {yaml_path}: {exc.strerror}") from None
    written.append(yaml_path)
    return written
