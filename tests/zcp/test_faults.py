"""Faults of the inventory's surroundings, each survived with nothing else lost: CloudStack
answering garbage, and the cache file's disk turning read-only. (The rest of the fault suite is
next to what it breaks; bench/README.md has the table.)"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from lab.cloudstack_sim import CloudStackSim
from tests.support import ADMIN_KEY, ADMIN_SECRET, unavailable
from zcp.config import CloudStackConfig
from zcp.errors import ZcpError
from zcp.inventory.cache import InventoryCache
from zcp.inventory.cloudstack import CloudStackSource
from zcp.inventory.model import Inventory

GARBAGE: dict[str, tuple[int, str, bytes]] = {
    "an HTML error page": (200, "text/html", b"<html><body>502 Bad Gateway</body></html>"),
    "truncated JSON": (200, "application/json", b'{"listvirtualmachinesresponse": {"count": 2'),
    "a list where a record belongs": (
        200,
        "application/json",
        json.dumps({"listdomainsresponse": {"count": 1, "domain": ["not-a-record"]}}).encode(),
    ),
    "a 500 with no body": (500, "text/plain", b""),
}


class Garbler:
    """Between the client and the CloudStack test server: passes requests through, or answers
    ``garbage`` (status, content type, body) instead while it is set."""

    def __init__(self, upstream: str) -> None:
        self.garbage: tuple[int, str, bytes] | None = None
        garbler = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if garbler.garbage is None:
                    up = requests.get(upstream + self.path, timeout=10)
                    status, ctype, body = up.status_code, up.headers["Content-Type"], up.content
                else:
                    status, ctype, body = garbler.garbage
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def garbler(cloudstack: CloudStackSim) -> Iterator[Garbler]:
    g = Garbler(cloudstack.url.removesuffix("/client/api"))
    yield g
    g.server.shutdown()


def source_via(g: Garbler) -> CloudStackSource:
    cfg = CloudStackConfig.model_validate(
        {
            "url": f"{g.url}/client/api",
            "api_key": ADMIN_KEY,
            "secret_key": ADMIN_SECRET,
            "timeout_seconds": 5,
        }
    )
    return CloudStackSource(cfg)


@pytest.mark.parametrize("kind", list(GARBAGE))
def test_cloudstack_answering_garbage_keeps_the_last_good_copy(
    garbler: Garbler, cloudstack: CloudStackSim, tmp_path: Path, kind: str
) -> None:
    cache = InventoryCache(
        source_via(garbler).load, refresh_interval=3600, cache_file=tmp_path / "c.json"
    )
    good = cache.refresh()
    assert len(good.vms) == 6
    garbler.garbage = GARBAGE[kind]
    with pytest.raises(ZcpError) as exc:
        cache.refresh()
    message = str(exc.value)
    assert "\n" not in message and message, message  # one line that says what went wrong
    assert cache.current() is good and cache.failures == 1
    assert Inventory.model_validate_json((tmp_path / "c.json").read_text()) == good
    garbler.garbage = None  # CloudStack is sane again: the next refresh recovers by itself
    assert len(cache.refresh().vms) == 6 and cache.last_error == ""


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of its own, to be remounted read-only (root and mount(8) needed)."""
    where = tmp_path / "ro"
    where.mkdir()
    if os.geteuid() != 0:
        unavailable("a read-only mount needs root")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)], capture_output=True
    )
    if proc.returncode:
        unavailable(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    yield where
    subprocess.run(["umount", str(where)], check=True)


def remount(where: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(where)], check=True)


def test_a_read_only_cache_disk_costs_only_the_copy_on_disk(
    default_inventory: Inventory, read_only_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="zcp.inventory.cache")
    path = read_only_dir / "inventory.json"
    versions = iter(range(1, 100))

    def loader() -> Inventory:
        return default_inventory.model_copy(update={"source": f"v{next(versions)}"})

    cache = InventoryCache(loader, refresh_interval=3600, cache_file=path)
    cache.refresh()
    assert Inventory.model_validate_json(path.read_text()).source == "v1"
    remount(read_only_dir, "ro")
    for _ in range(3):  # refreshes go on, in memory; the copy on disk stays the last written
        cache.refresh()
    assert cache.current().source == "v4" and cache.failures == 0
    assert cache.cache_write_failures == 3
    assert Inventory.model_validate_json(path.read_text()).source == "v1"
    warned = [r for r in caplog.records if r.getMessage().startswith("cannot write the inventory")]
    assert len(warned) == 1 and "Read-only file system" in warned[0].error  # type: ignore[attr-defined]
    metrics = {m.name: m.samples[0].value for m in cache.collect() if m.samples}
    assert metrics["zcp_inventory_cache_write_failures"] == 3
    assert not [p for p in read_only_dir.iterdir() if p.name != "inventory.json"]
    remount(read_only_dir, "rw")  # the disk is back: the next refresh writes again
    cache.refresh()
    assert Inventory.model_validate_json(path.read_text()).source == "v5"
    assert any(r.getMessage().endswith(": recovered") for r in caplog.records)
    # and a restart reads the copy on disk
    assert InventoryCache(loader, refresh_interval=3600, cache_file=path).current().source == "v5"
