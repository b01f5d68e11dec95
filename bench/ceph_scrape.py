#!/usr/bin/env python3
"""Scrape-time benchmark: our Ceph exporter vs Ceph's own mgr prometheus module.

Starts a private single-node Ceph cluster (lab/ceph.py) with N RBD images over the three
storage-class pools and M RGW users each with a bucket and objects, runs `zcp-obs exporter
ceph` against it, waits for its first complete background refresh, then scrapes it and the mgr
prometheus module alternately. Prints the median and p95 of each, the ratio, and the duration
of one full background refresh of each source (and whether it covered all N images; placement
is the pg dump of every pool's PGs).

    .venv/bin/python bench/ceph_scrape.py --images 200 --users 50
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stats import count_series, p95
from lab.ceph import CephLab
from lab.procs import Daemon, free_port
from zcp.wait import wait_until

POOLS = ("rbd-fast", "rbd-flow", "rbd-bulk")


def values(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="zcp-bench-ceph-"))
    lab = CephLab(workdir / "ceph")
    exporter: Daemon | None = None
    try:
        print(f"starting Ceph in {workdir}", file=sys.stderr)
        lab.start()
        for pool in POOLS:
            lab.create_pool(pool, pg_num=16)
        t0 = time.monotonic()
        for i in range(args.images):
            pool = POOLS[i % len(POOLS)]
            lab.run(
                "rbd",
                "create",
                f"{pool}/img-{i}",
                "--size",
                "64M",
                "--image-feature",
                "layering,exclusive-lock,object-map,fast-diff",
            )
            if i % 10 == 0:
                lab.create_image(pool, f"w-{i}", "64M", write_bytes=4 * 1024 * 1024)
            print(f"\rimages {i + 1}/{args.images}", end="", file=sys.stderr)
        for u in range(args.users):
            s3 = lab.s3_client(f"acct-{u:04d}")
            s3.create_bucket(Bucket=f"b-{u:04d}")
            s3.put_object(Bucket=f"b-{u:04d}", Key="o", Body=b"x" * 10_000)
            print(f"\rusers {u + 1}/{args.users}   ", end="", file=sys.stderr)
        print(f"\nsetup {time.monotonic() - t0:.0f}s", file=sys.stderr)
        total_images = (
            len(list(lab.json("rbd", "ls", POOLS[0])))
            + len(list(lab.json("rbd", "ls", POOLS[1])))
            + len(list(lab.json("rbd", "ls", POOLS[2])))
        )
        config = workdir / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "exporters": {
                        "ceph": {
                            "conf": str(lab.conf),
                            "keyring": str(lab.keyring),
                            "rgw_endpoint": lab.rgw_url,
                            "pool_classes": {
                                "rbd-fast": "fast",
                                "rbd-flow": "flow",
                                "rbd-bulk": "bulk",
                            },
                        }
                    }
                }
            )
        )
        port = free_port()
        exporter = Daemon(
            "ceph-exporter",
            [
                str(Path(sys.executable).parent / "zcp-obs"),
                "--config",
                str(config),
                "exporter",
                "ceph",
                "--listen",
                f"127.0.0.1:{port}",
            ],
            workdir / "exporter",
            f"http://127.0.0.1:{port}/metrics",
        )
        exporter.start()
        url = f"http://127.0.0.1:{port}/metrics"
        session = requests.Session()
        seen_ups: list[dict[str, float]] = []

        def refreshed() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
            got = values(session.get(url, timeout=30).text)
            ups = {
                dict(ls)["source"]: v
                for (n, ls), v in got.items()
                if n == "ceph_exporter_source_up"
            }
            seen_ups.append(ups)
            if ups and all(ups.values()) and got.get(("ceph_rbd_images", frozenset())):
                return got
            return None

        got = wait_until(refreshed, timeout=300, interval=0.5)
        if got is None:
            raise SystemExit(f"first refresh never completed: {seen_ups[-1]}")
        durations = {
            dict(ls)["source"]: v
            for (n, ls), v in got.items()
            if n == "ceph_exporter_source_refresh_duration_seconds"
        }
        covered = int(got[("ceph_rbd_images", frozenset())])
        targets = {
            "zcp-obs exporter ceph (ours)": url,
            "ceph-mgr prometheus module": lab.mgr_prometheus_url,
        }
        for target in targets.values():
            session.get(target, timeout=60)  # warm-up
        times: dict[str, list[float]] = {k: [] for k in targets}
        series: dict[str, int] = {}
        for r in range(args.rounds):
            for name in list(targets) if r % 2 == 0 else list(reversed(targets)):
                t = time.perf_counter()
                resp = session.get(targets[name], timeout=60)
                times[name].append(time.perf_counter() - t)
                resp.raise_for_status()
                series[name] = count_series(resp.text)
            print(f"\rround {r + 1}/{args.rounds}", end="", file=sys.stderr)
        print(file=sys.stderr)

        print(
            f"\nceph scrape benchmark: {total_images} RBD images, {args.users} RGW users "
            f"with a bucket each, {args.rounds} alternating rounds\n"
        )
        print("| target | median ms | p95 ms | series |")
        print("|---|---|---|---|")
        for name, xs in times.items():
            print(
                f"| {name} | {statistics.median(xs) * 1000:.1f} | {p95(xs) * 1000:.1f} | "
                f"{series[name]} |"
            )
        a, b = list(times)
        ratio = statistics.median(times[a]) / statistics.median(times[b])
        print(f"\nratio ours/mgr: median {ratio:.2f}, p95 {p95(times[a]) / p95(times[b]):.2f}")
        print(
            f"\none background refresh: rbd {durations.get('rbd', 0):.2f}s (covered "
            f"{covered}/{total_images} images), rgw {durations.get('rgw', 0):.2f}s, "
            f"df {durations.get('df', 0):.2f}s, placement {durations.get('placement', 0):.2f}s"
        )
    finally:
        if exporter is not None:
            exporter.stop()
        lab.stop()


if __name__ == "__main__":
    main()
