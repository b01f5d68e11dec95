#!/usr/bin/env python3
"""Alert latency: time from a real fault to the page at the receiver, and from the repair to
the resolved notification, against the floor set by the configuration.

Runs the whole alerting path on real daemons (lab/alerting.py: KVM guests, libvirt exporter,
Prometheus with the built rules, Alertmanager with the built config, a webhook receiver) and,
for each round, destroys a guest (VMDownUnexpectedly) and stops the libvirt exporter
(LibvirtExporterDown), then repairs both.

    .venv/bin/python bench/alert_latency.py --rounds 5
    .venv/bin/python bench/alert_latency.py --rounds 3 --scrape-interval 5 --hold 10 --group-wait 5

Clocks start when the fault (destroy returned, exporter gone) or the repair (guest defined
and started, exporter answering) is complete. Reference for a page: the floor scrape interval
+ for: + group_wait (one scrape to see the fault, the rule's hold, Alertmanager's wait for a
new group). For a resolution: the bound scrape interval + evaluation interval + group_interval
(the next scrape sees the repair, the next evaluation resolves, the group's next flush sends).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab.alerting import AlertLab
from lab.libvirt import LibvirtLab

GROUP_INTERVAL = 1.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument(
        "--scrape-interval",
        type=float,
        default=1.0,
        help="Prometheus scrape and evaluation interval, seconds",
    )
    ap.add_argument("--hold", type=float, default=3.0, help="for: of every rule, seconds")
    ap.add_argument("--group-wait", type=float, default=1.0, help="Alertmanager group_wait")
    args = ap.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="zcp-bench-alerts-"))
    lab = LibvirtLab(workdir / "libvirt")
    results: dict[str, list[float]] = {
        k: []
        for k in (
            "guest destroyed -> page",
            "guest back -> resolved",
            "exporter stopped -> page",
            "exporter back -> resolved",
        )
    }
    alert_lab: AlertLab | None = None
    try:
        print(f"starting the alerting lab in {workdir}", file=sys.stderr)
        lab.start()
        alert_lab = AlertLab(
            lab,
            workdir / "alerts",
            hold=f"{int(args.hold)}s",
            scrape_interval=f"{int(args.scrape_interval)}s",
            group_wait=args.group_wait,
        )
        alert_lab.start()
        assert alert_lab.inventory is not None
        vm = alert_lab.inventory.vms[0]
        rx = alert_lab.receiver
        lab_ = alert_lab

        def timed(
            key: str,
            action: Callable[[], None],
            match: Callable[[dict[str, Any]], bool],
            status: str,
        ) -> None:
            action()  # the fault (or the repair) is complete when this returns
            t0 = time.monotonic()
            at = rx.wait_for(match, status, t0, timeout=120)
            if at is None:
                raise SystemExit(f"{key}: no {status} notification within 120 s")
            results[key].append(at - t0)

        def vm_down(a: dict[str, Any]) -> bool:
            return (
                a["labels"]["alertname"] == "VMDownUnexpectedly"
                and a["labels"].get("vm_id") == vm.id
            )

        def exporter_down(a: dict[str, Any]) -> bool:
            return a["labels"]["alertname"] == "LibvirtExporterDown"

        for r in range(args.rounds):
            timed(
                "guest destroyed -> page",
                lambda: lab.destroy_guest(vm.instance_name),
                vm_down,
                "firing",
            )
            timed("guest back -> resolved", lambda: lab_.boot(vm.id), vm_down, "resolved")
            timed("exporter stopped -> page", lab_.exporter.stop, exporter_down, "firing")
            timed("exporter back -> resolved", lab_.exporter.start, exporter_down, "resolved")
            print(f"\rround {r + 1}/{args.rounds}", end="", file=sys.stderr)
            time.sleep(args.scrape_interval * 3)  # let Prometheus settle between rounds
        print(file=sys.stderr)
    finally:
        if alert_lab is not None:
            alert_lab.stop()
        lab.stop()

    page_floor = args.scrape_interval + args.hold + args.group_wait
    resolve_bound = 2 * args.scrape_interval + GROUP_INTERVAL
    print(
        f"\nalert latency: {args.rounds} rounds, scrape/eval {args.scrape_interval:g} s, "
        f"for: {args.hold:g} s, group_wait {args.group_wait:g} s, group_interval "
        f"{GROUP_INTERVAL:g} s\n"
    )
    print("| path | median s | max s | reference s | median / reference |")
    print("|---|---|---|---|---|")
    for key, values in results.items():
        page = key.endswith("page")
        ref = page_floor if page else resolve_bound
        med = statistics.median(values)
        print(
            f"| {key} | {med:.2f} | {max(values):.2f} | "
            f"{ref:.2f} ({'floor' if page else 'bound'}) | {med / ref:.2f} |"
        )


if __name__ == "__main__":
    main()
