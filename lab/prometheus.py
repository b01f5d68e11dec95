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


def api(method: str, url: str, path: str, what: str, **kwargs: Any) -> Any:
    """Call a Prometheus or Alertmanager HTTP API: the JSON answer, or a DaemonError line when
    it cannot be reached, times out, or answers something that is not JSON."""
    try:
        resp = requests.request(method, f"{url}{path}", timeout=10, **kwargs)
    except requests.Timeout:
        raise DaemonError(f"{what}: {url}{path} did not answer within 10 s") from None
    except requests.RequestException as exc:
        raise DaemonError(f"{what}: cannot reach {url}: {type(exc).__name__}") from None
    try:
        return resp.json()
    except ValueError:
        raise DaemonError(
            f"{what}: {url}{path} answered HTTP {resp.status_code} that is not JSON: "
            f"{resp.text[:120].strip()!r}"
        ) from None


def _field(body: Any, what: str, *keys: str) -> Any:
    """``body[k1][k2]...`` of an API answer, or a DaemonError line naming what was missing."""
    for key in keys:
        if not isinstance(body, dict) or key not in body:
            raise DaemonError(f"{what}: unexpected answer, no {'.'.join(keys)}: {str(body)[:120]}")
        body = body[key]
    return body


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
        what = f"query {expr!r}"
        body = api("GET", self.url, "/api/v1/query", what, params={"query": expr})
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error") if isinstance(body, dict) else body
            raise DaemonError(f"{what} failed: {error}")
        return list(_field(body, what, "data", "result"))

    def rules(self) -> list[dict[str, Any]]:
        """The rule groups loaded."""
        body = api("GET", self.url, "/api/v1/rules", "prometheus rules")
        return list(_field(body, "prometheus rules", "data", "groups"))

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets with their health."""
        body = api("GET", self.url, "/api/v1/targets", "prometheus targets")
        return list(_field(body, "prometheus targets", "data", "activeTargets"))


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
        body = api("GET", self.url, "/api/v2/alerts", "alertmanager alerts")
        if not isinstance(body, list):
            raise DaemonError(f"alertmanager alerts: unexpected answer: {str(body)[:120]}")
        return body
