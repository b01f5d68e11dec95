#!/usr/bin/env python3
"""Metering benchmark: our exact job vs the increase()-per-hour approach other tools use vs
fetching every raw sample (the naive exact floor), on VictoriaMetrics and on Prometheus, in one
run.

--vms VMs with 2 volumes and 1 vNIC each, --days days (and an hour either side) at --step
seconds into VictoriaMetrics, and the first --prometheus-hours of the same history into a
Prometheus 2.42 TSDB built by promtool: libvirt state, vCPUs and memory, the inventory's
zcp_vm_state/zcp_vm_info/zcp_volume_info/zcp_nic_info, RBD provisioned bytes (a tenth of the
volumes resized once), vNIC transmit/receive counters (a QEMU restart, a counter reset, on a
twentieth of them; a 20-minute scrape gap ending on an hour's edge on a fiftieth). Loaded
through VictoriaMetrics' import API (Prometheus: OpenMetrics for
``promtool tsdb create-blocks-from openmetrics``). Then on each store, alternating nothing
(each runs once, in this order):
* ours: ``zcp-obs metering run`` (VictoriaMetrics: over a quarter of the range first) over
  the whole range, into SQLite (subprocesses: wall time and peak RSS), for the peak memory's
  independence of the length;
* the increase() approach as a job: the same meters, owners, rating and database writes as
  ours (``Job`` with ``records_of`` replaced), the quantities from one query_range (step 1h)
  per meter and chunk: ``sum by (key) (increase(F[1h]))`` for counters, ``avg_over_time``
  times 3600 s for sizes and states (what other tools do); in a subprocess like ours;
* the increase() queries alone (one query_range per family over the whole range, nothing
  parsed into records or written);
* raw floor: every raw sample of the same families, range selectors of at most a day,
  parsed;
* the billing error of increase() against our exact bytes per vNIC.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab.prometheus import PrometheusServer
from lab.victoriametrics import VictoriaMetricsServer
from metering.job import Job, Options, owners_in
from metering.meters import enabled
from metering.periods import HOUR, HOUR_MS, from_ms, to_ms
from metering.pricing import load_price_book
from metering.records import Record, record_key
from metering.source import QuerySource
from metering.store import engine_for, upgrade

START = datetime(2026, 10, 1, tzinfo=UTC)
GIB = 2**30
FAMILIES = [
    "libvirt_domain_state",
    "libvirt_domain_vcpus",
    "libvirt_domain_memory_maximum_bytes",
    'zcp_vm_state{job="zcp-inventory"}',
    "ceph_rbd_image_provisioned_bytes",
    'libvirt_domain_interface_transmit_bytes_total{nic_id!=""}',
    'libvirt_domain_interface_receive_bytes_total{nic_id!=""}',
    "zcp_vm_info",
    "zcp_volume_info",
    "zcp_nic_info",
]
COUNTERS = {FAMILIES[5], FAMILIES[6]}
CHUNK_HOURS = 24
MARGIN_S = 3600


def lines(vms: int, hours: int, step: int) -> Iterator[str]:
    """The history as import lines, series by series (nothing held in memory)."""
    # an hour of history on either side of the metered range, as in production (a run meters
    # settled hours inside the store's data; the range's first hour needs the sample before)
    t0 = int(START.timestamp() * 1000) - MARGIN_S * 1000
    n = (hours * 3600 + 2 * MARGIN_S) // step
    times = [str(t0 + k * step * 1000) for k in range(n)]
    for v in range(vms):
        vm = f"vm-{v:05d}"
        acct = f"acct-{v % 50:03d}"
        host = f"kvm{v % 40:03d}"
        lv = f'job="libvirt",vm_id="{vm}",instance_name="i-{v}-VM",host="{host}"'
        for name, value in (
            ("libvirt_domain_state", "1"),
            ("libvirt_domain_vcpus", "2"),
            ("libvirt_domain_memory_maximum_bytes", str(2 * GIB)),
        ):
            prefix = f"{name}{{{lv}}} {value} "
            yield "".join(prefix + t + "\n" for t in times)
        inv = f'job="zcp-inventory",vm_id="{vm}",account_id="{acct}"'
        yield "".join(f'zcp_vm_state{{{inv},state="Running"}} 1 {t}\n' for t in times)
        yield "".join(f"zcp_vm_info{{{inv}}} 1 {t}\n" for t in times)
        for d in range(2):
            vol = f"vol-{v:05d}-{d}"
            labels = f'job="zcp-ceph",volume_id="{vol}",storage_class="{("fast", "bulk")[d]}"'
            resize = n // 2 if (v * 2 + d) % 10 == 0 else n
            yield "".join(
                f"ceph_rbd_image_provisioned_bytes{{{labels}}} "
                f"{(10 if k < resize else 20) * GIB} {times[k]}\n"
                for k in range(n)
            )
            yield "".join(
                f'zcp_volume_info{{job="zcp-inventory",volume_id="{vol}",'
                f'account_id="{acct}"}} 1 {t}\n'
                for t in times
            )
        nic = f"nic-{v:05d}"
        gap = range(n // 3, n // 3 + 1200 // step) if v % 50 == 0 else range(0)
        reset = n * 2 // 3 if v % 20 == 0 else n
        for direction, rate in (("transmit", 1000 + v), ("receive", 3000 + v)):
            labels = f'{lv},device="vnet0",nic_id="{nic}"'
            name = f"libvirt_domain_interface_{direction}_bytes_total"
            yield "".join(
                f"{name}{{{labels}}} "
                f"{rate * k if k < reset else rate * (k - reset) + 7} {times[k]}\n"
                for k in range(n)
                if k not in gap
            )
        yield "".join(
            f'zcp_nic_info{{job="zcp-inventory",nic_id="{nic}",account_id="{acct}"}} 1 {t}\n'
            for t in times
        )


def load(vm: VictoriaMetricsServer, vms: int, hours: int, step: int) -> int:
    total = 0
    batch: list[str] = []
    size = 0
    for chunk in lines(vms, hours, step):
        batch.append(chunk)
        size += len(chunk)
        total += chunk.count("\n")
        if size > 64 << 20:
            requests.post(
                f"{vm.url}/api/v1/import/prometheus", data="".join(batch).encode(), timeout=600
            ).raise_for_status()
            batch, size = [], 0
            print(f"\rloaded {total / 1e6:.0f} M samples", end="", file=sys.stderr)
    if batch:
        requests.post(
            f"{vm.url}/api/v1/import/prometheus", data="".join(batch).encode(), timeout=600
        ).raise_for_status()
    requests.get(f"{vm.url}/internal/force_flush", timeout=60)
    print(f"\rloaded {total / 1e6:.1f} M samples", file=sys.stderr)
    return total


def openmetrics(vms: int, hours: int, step: int, workdir: Path) -> tuple[Path, int]:
    """The same history as OpenMetrics for promtool: families grouped (one temporary file per
    family, then joined), seconds timestamps, ``# EOF``; nothing held in memory."""
    parts: dict[str, Path] = {}
    files = {}
    total = 0
    for chunk in lines(vms, hours, step):
        name = chunk[: chunk.index("{")]
        if name not in files:
            parts[name] = workdir / f"{name}.part"
            files[name] = open(parts[name], "w")  # noqa: SIM115 (closed below)
        out = files[name]
        for line in chunk.splitlines():
            head, t = line.rsplit(" ", 1)
            out.write(f"{head} {t[:-3]}.{t[-3:]}\n")
            total += 1
    for f in files.values():
        f.close()
    path = workdir / "history.om"
    with open(path, "w") as om:
        for name, part in parts.items():
            kind = "counter" if name.endswith("_total") else "gauge"
            om.write(f"# TYPE {name.removesuffix('_total')} {kind}\n")
            with open(part) as f:
                for line in f:
                    om.write(line)
            part.unlink()
        om.write("# EOF\n")
    return path, total


def prometheus_from(path: Path, workdir: Path) -> PrometheusServer:
    """A Prometheus 2.42 over the TSDB promtool builds from ``path``."""
    promtool = "/usr/bin/promtool"
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(path), str(workdir / "data")],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    server = PrometheusServer(
        workdir,
        {"global": {"scrape_interval": "1m"}, "scrape_configs": []},
        extra_args=("--storage.tsdb.retention.time=100y",),
    )
    server.start()
    return server


def ours(url: str, workdir: Path, hours: int, tag: str) -> tuple[float, float, Path]:
    """``zcp-obs metering run`` in a subprocess: wall seconds, peak RSS MiB, its database."""
    db = workdir / f"{tag}.db"
    cfg = workdir / f"{tag}.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "metering": {
                    "query_url": url,
                    "database_url": f"sqlite:///{db}",
                    "settle_seconds": 0,
                    "chunk_hours": CHUNK_HOURS,
                },
                "logging": {"level": "WARNING"},
            }
        )
    )
    end = START + timedelta(hours=hours)
    t = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "zcp_obs",
            "--config",
            str(cfg),
            "metering",
            "run",
            "--from",
            START.isoformat(),
            "--to",
            end.isoformat(),
        ],
        stderr=subprocess.DEVNULL,
    )
    # this child's own peak RSS (RUSAGE_CHILDREN would mix in every child waited for before:
    # the stopped VictoriaMetrics, promtool)
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"zcp-obs metering run failed ({proc.returncode})")
    return wall, usage.ru_maxrss / 1024, db


class IncreaseJob(Job):
    """The increase()-per-hour approach, on our pipeline: only the quantities differ."""

    def records_of(self, hours: Sequence[datetime]) -> tuple[list[Record], int]:
        start, end = to_ms(hours[0]), to_ms(hours[-1]) + HOUR_MS
        gap = self.options.rules.max_gap_ms
        owners = owners_in(self.source, self.meters, start, end, gap)
        evaluated = from_ms(end - 1)
        out: list[Record] = []
        for meter in self.meters:
            by = ", ".join(dict.fromkeys((*meter.key, "account_id")))
            family = meter.family
            if meter.kind == "counter":
                query = f"sum by ({by}) (increase({family}[1h]))"
            elif meter.weight:
                query = f"max by ({by}) (avg_over_time({meter.weight}[1h])) * 3600"
            elif meter.state_label:
                states = "|".join(meter.states)
                query = (
                    f"max by ({by}) (avg_over_time({family[:-1]},"
                    f'{meter.state_label}=~"{states}"}}[1h])) * 3600'
                )
            elif meter.kind == "presence":
                query = f"max by ({by}) (last_over_time({family}[1h])) * 3600"
            else:
                query = f"max by ({by}) (avg_over_time({family}[1h])) * 3600"
            for item in self.source.range(query, start + HOUR_MS, end, HOUR_MS):
                labels = item["metric"]
                resource = labels.get(meter.resource_label, "")
                if not resource:
                    continue
                cls = labels.get("storage_class", "")
                account = (
                    labels.get("account_id", "")
                    if meter.owner == "label"
                    else owners[meter.owner].get(resource, "")
                )
                for t, v in item["values"]:
                    period = from_ms(round(float(t) * 1000) - HOUR_MS)
                    quantity = Decimal(v)
                    if not quantity:
                        continue
                    out.append(
                        Record(
                            record_key(meter.name, resource, cls, period),
                            meter.name,
                            period,
                            period + HOUR,
                            resource,
                            cls,
                            account,
                            quantity,
                            meter.base_unit,
                            0,
                            Decimal(0),
                            Decimal(0),
                            0,
                            "" if account else "unowned",
                            query,
                            evaluated,
                            "",
                        )
                    )
        return out, 0


def rival_job(url: str, db: str, start: datetime, end: datetime) -> None:
    """The increase() job over ``[start, end)`` into the SQLite file ``db``."""
    engine = engine_for(f"sqlite:///{db}")
    upgrade(engine)
    job = IncreaseJob(
        QuerySource(url),
        engine,
        load_price_book(None),
        enabled(()),
        Options(settle=timedelta(0), chunk_hours=CHUNK_HOURS),
    )
    job.run(start, end)


def rival(url: str, workdir: Path, hours: int, tag: str) -> tuple[float, Path]:
    """:class:`IncreaseJob` in a subprocess, as ours runs: wall seconds, its database."""
    db = workdir / f"increase-{tag}.db"
    end = START + timedelta(hours=hours)
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, __file__, "--rival-job", url, str(db), START.isoformat(), end.isoformat()],
        check=True,
    )
    return time.perf_counter() - t, db


def increase_approach(url: str, hours: int) -> tuple[float, dict[str, Decimal]]:
    """One query_range per family, step 1h: increase() for counters, avg_over_time else."""
    end = START + timedelta(hours=hours)
    sent: dict[str, Decimal] = {}
    t = time.perf_counter()
    for family in FAMILIES[:7]:
        if family in COUNTERS:
            query = f"sum by (nic_id) (increase({family}[1h]))"
        else:
            query = f"avg_over_time({family}[1h])"
        resp = requests.get(
            f"{url}/api/v1/query_range",
            params={
                "query": query,
                "start": int(START.timestamp()) + 3600,
                "end": int(end.timestamp()),
                "step": "3600",
            },
            timeout=600,
        )
        resp.raise_for_status()
        data = resp.json()["data"]["result"]
        if family == FAMILIES[5]:
            for item in data:
                sent[item["metric"]["nic_id"]] = sum(
                    (Decimal(v) for _t, v in item["values"]), Decimal(0)
                )
    return time.perf_counter() - t, sent


def raw_floor(url: str, hours: int) -> tuple[float, int]:
    """Every raw sample of the families, at most a day per query, parsed."""
    n = 0
    t = time.perf_counter()
    for family in FAMILIES:
        for h in range(0, hours, 24):
            span = min(24, hours - h)
            at = START + timedelta(hours=h + span)
            resp = requests.get(
                f"{url}/api/v1/query",
                params={
                    "query": f"{family}[{span * 3600}s]",
                    "time": f"{at.timestamp() - 0.001:.3f}",
                },
                timeout=600,
            )
            resp.raise_for_status()
            for item in resp.json()["data"]["result"]:
                n += len(item["values"])
    return time.perf_counter() - t, n


def sent_of(db: Path) -> dict[str, Decimal]:
    """Bytes sent per vNIC as a job's database holds them."""
    con = sqlite3.connect(db)
    out: dict[str, Decimal] = {}
    for resource_id, quantity in con.execute(
        "select resource_id, quantity from usage_records where meter='network.bytes_sent'"
    ):
        out[resource_id] = out.get(resource_id, Decimal(0)) + Decimal(quantity)
    return out


def gaps_of(db: Path) -> tuple[int, Decimal]:
    """Records flagged for a gap and their unbilled seconds, as a job's database holds them."""
    con = sqlite3.connect(db)
    n, unbilled = 0, Decimal(0)
    for (seconds,) in con.execute("select unbilled_s from usage_records where flags like '%gap%'"):
        n += 1
        unbilled += Decimal(seconds)
    return n, unbilled


def compare(url: str, workdir: Path, hours: int, tag: str) -> dict[str, object]:
    """Ours, the increase() job, the increase() queries and the raw floor on one store."""
    ours_s, ours_rss, db = ours(url, workdir, hours, tag)
    job_s, job_db = rival(url, workdir, hours, tag)
    inc_s, inc_sent = increase_approach(url, hours)
    raw_s, raw_n = raw_floor(url, hours)
    exact = sent_of(db)
    job_sent = sent_of(job_db)
    job_err = sum((abs(job_sent.get(k, Decimal(0)) - v) for k, v in exact.items()), Decimal(0))
    err = sum((abs(inc_sent.get(k, Decimal(0)) - v) for k, v in exact.items()), Decimal(0))
    total = sum(exact.values(), Decimal(0))
    flagged, unbilled = gaps_of(db)
    return {
        "hours": hours,
        "ours_s": round(ours_s, 1),
        "ours_peak_rss_mib": round(ours_rss),
        "increase_job_s": round(job_s, 1),
        "increase_queries_s": round(inc_s, 1),
        "raw_floor_s": round(raw_s, 1),
        "raw_floor_samples": raw_n,
        "ratio_ours_increase_job": round(ours_s / job_s, 2),
        "ratio_ours_increase_queries": round(ours_s / inc_s, 2),
        "ratio_ours_raw_floor": round(ours_s / raw_s, 2),
        "bytes_sent_exact": str(total),
        "bytes_sent_increase": str(sum(inc_sent.values(), Decimal(0))),
        "increase_abs_error_bytes": str(err),
        "increase_job_abs_error_bytes": str(job_err),
        "increase_rel_error": f"{float(err / total):.2e}" if total else "n/a",
        "ours_gap_records": flagged,
        "ours_unbilled_s": str(unbilled),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vms", type=int, default=500)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--step", type=int, default=60)
    parser.add_argument(
        "--prometheus-hours",
        type=int,
        default=6,
        help="the window loaded into Prometheus (0: none)",
    )
    parser.add_argument(
        "--rival-job", nargs=4, metavar=("URL", "DB", "FROM", "TO"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.rival_job:
        url, db, lo, hi = args.rival_job
        rival_job(url, db, datetime.fromisoformat(lo), datetime.fromisoformat(hi))
        return
    workdir = Path(tempfile.mkdtemp(prefix="zcp-bench-metering-"))
    out: dict[str, object] = {"vms": args.vms, "days": args.days, "step_s": args.step}
    try:
        vm = VictoriaMetricsServer(workdir / "vm")
        vm.start()
        try:
            t = time.perf_counter()
            out["samples"] = load(vm, args.vms, args.days * 24, args.step)
            out["load_s"] = round(time.perf_counter() - t, 1)
            # a quarter of the range first: the peak memory must not grow with the length
            quarter_days = max(1, args.days // 4)
            q_s, q_rss, _ = ours(vm.url, workdir, quarter_days * 24, "quarter")
            out[f"ours_{quarter_days}d_s"] = round(q_s, 1)
            out[f"ours_{quarter_days}d_peak_rss_mib"] = round(q_rss)
            out["victoriametrics"] = compare(vm.url, workdir, args.days * 24, "victoria")
        finally:
            vm.stop()
        if args.prometheus_hours:
            pdir = workdir / "prometheus"
            pdir.mkdir()
            t = time.perf_counter()
            path, n = openmetrics(args.vms, args.prometheus_hours, args.step, pdir)
            prom = prometheus_from(path, pdir)
            path.unlink()
            try:
                out["prometheus"] = {
                    "samples": n,
                    "load_s": round(time.perf_counter() - t, 1),
                    **compare(prom.url, workdir, args.prometheus_hours, "prometheus"),
                }
            finally:
                prom.stop()
        print(json.dumps(out, indent=2))
    finally:
        if not os.environ.get("KEEP"):
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
