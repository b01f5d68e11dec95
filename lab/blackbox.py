"""A real blackbox exporter (Debian's ``prometheus-blackbox-exporter``) with a given config, on a
free 127.0.0.1 port; ``probe`` runs one probe the way Prometheus's scrape would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from lab.procs import Daemon, free_port
from zcp.binaries import require
from zcp.errors import DaemonError
from zcp.files import private_dir, write_atomic


def samples(text: str) -> dict[str, float]:
    """The samples of an exposition: ``name`` for a sample without labels, else
    ``name{k="v",...}`` (labels sorted)."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


class BlackboxExporter(Daemon):
    """The blackbox exporter; ``address`` is the host:port a Prometheus job points at."""

    def __init__(self, workdir: Path, config: dict[str, Any], port: int | None = None) -> None:
        binary = require("prometheus-blackbox-exporter", "prometheus-blackbox-exporter")
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.address}"
        self.config_path = workdir / "blackbox.yml"
        private_dir(workdir)
        write_atomic(self.config_path, yaml.safe_dump(config, sort_keys=False), 0o600)
        super().__init__(
            "blackbox-exporter",
            [
                binary,
                f"--config.file={self.config_path}",
                f"--web.listen-address={self.address}",
                "--log.format=json",
            ],
            workdir,
            f"{self.url}/-/healthy",
        )

    def probe(self, target: str, module: str, timeout: float = 30.0) -> dict[str, float]:
        """Probe ``target`` with ``module``: the samples the exporter reports (see
        :func:`samples`), ``probe_success`` among them."""
        try:
            resp = requests.get(
                f"{self.url}/probe", params={"target": target, "module": module}, timeout=timeout
            )
        except requests.RequestException as exc:
            raise DaemonError(f"blackbox exporter: cannot reach {self.url}: {exc}") from None
        if resp.status_code != 200:
            raise DaemonError(
                f"blackbox exporter: probe of {target} with {module} answered HTTP "
                f"{resp.status_code}: {resp.text.strip()[:200]}"
            )
        return samples(resp.text)
