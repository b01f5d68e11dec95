"""Real Prometheus and Alertmanager processes (Debian's packages) for tests and the demo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests
import yaml

from lab.procs import Daemon, free_port
from zcp.binaries import require
from zcp.errors import DaemonError
from zcp.files import private_dir, write_atomic


class PrometheusServer(Daemon):
    """Prometheus with a given config and rule files, on a free 127.0.0.1 port."""

    def __init__(
        self,
        workdir: Path,
        config: dict[str, Any],
        rule_files: list[Path] | None = None,
        port: int | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        binary = require("prometheus", "prometheus")
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = workdir / "prometheus.yml"
        config = dict(config)
        if rule_files:
            config["rule_files"] = [str(p) for p in rule_files]
        private_dir(workdir)
        write_atomic(self.config_path, yaml.safe_dump(config, sort_keys=False), 0o600)
        super().__init__(
            "prometheus",
            [
                binary,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--log.format=json",
                *extra_args,
            ],
            workdir,
            f"{self.url}/-/ready",
        )

    def write_config(self, config: dict[str, Any]) -> None:
        """Replace the config and reload it through the lifecycle API."""
        write_atomic(self.config_path, yaml.safe_dump(config, sort_keys=False), 0o600)
        resp = requests.post(f"{self.url}/-/reload", timeout=10)
        if resp.status_code != 200:
            raise DaemonError(f"prometheus reload failed: {resp.text.strip()}")

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Run an instant query; the result vector."""
        resp = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = resp.json()
        if body.get("status") != "success":
            raise DaemonError(f"query {expr!r} failed: {body.get('error')}")
        return list(body["data"]["result"])

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets with their health."""
        resp = requests.get(f"{self.url}/api/v1/targets", timeout=10)
        return list(resp.json()["data"]["activeTargets"])


class AlertmanagerServer(Daemon):
    """Alertmanager with a given config, clustering off, on a free 127.0.0.1 port."""

    def __init__(self, workdir: Path, config: dict[str, Any], port: int | None = None) -> None:
        binary = require("prometheus-alertmanager", "prometheus-alertmanager")
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = workdir / "alertmanager.yml"
        private_dir(workdir)
        write_atomic(self.config_path, yaml.safe_dump(config, sort_keys=False), 0o600)
        super().__init__(
            "alertmanager",
            [
                binary,
                f"--config.file={self.config_path}",
                f"--storage.path={workdir / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
                "--log.format=json",
            ],
            workdir,
            f"{self.url}/-/ready",
        )

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts Alertmanager currently holds (API v2)."""
        resp = requests.get(f"{self.url}/api/v2/alerts", timeout=10)
        return list(resp.json())
