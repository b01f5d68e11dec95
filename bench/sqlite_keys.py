#!/usr/bin/env python3
"""SQLite inserts of a month of hourly records (30 batches of 96,000 rows, as the metering
bench's chunks) with keys that are plain hashes vs keys that start with their hour, as the
usage_records table is indexed (a text primary key, (period, meter), (account, period)).
Why metering's record keys start with their hour (docs/design.md, "Storage")."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import tempfile
import time


def run(path: str, hour_first: bool, pad: int, batches: int, n: int) -> tuple[float, float]:
    """Total insert seconds, and the last batch's."""
    if os.path.exists(path):
        os.remove(path)
    con = sqlite3.connect(path)
    con.execute(
        "create table r (key varchar(32) primary key, meter text, ps text, acct text, "
        "q text, h text, query text)"
    )
    con.execute("create index ix_period on r (ps, meter)")
    con.execute("create index ix_account on r (acct, ps)")
    total = last = 0.0
    k = 0
    for b in range(batches):
        rows = []
        for i in range(n):
            digest = hashlib.sha256(str(k + i).encode()).hexdigest()
            key = f"{b * 24 + i % 24:08x}{digest[:24]}" if hour_first else digest[:32]
            rows.append(
                (
                    key,
                    "m",
                    f"2026-10-{b:02d} {i % 24:02d}",
                    f"acct-{i % 50}",
                    "123.45",
                    "h" * 32,
                    "x" * pad,
                )
            )
        rows.sort()
        k += n
        t = time.perf_counter()
        con.executemany("insert into r values (?, ?, ?, ?, ?, ?, ?)", rows)
        con.commit()
        last = time.perf_counter() - t
        total += last
    con.close()
    os.remove(path)
    return total, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--rows", type=int, default=96_000)
    args = parser.parse_args()
    path = os.path.join(tempfile.mkdtemp(prefix="zcp-bench-sqlite-"), "k.db")
    out: dict[str, object] = {}
    totals: dict[str, float] = {}
    for name, hour_first, pad in (
        ("hashed keys, 700-byte query", False, 700),
        ("hour-first keys, 700-byte query", True, 700),
        ("hashed keys, 40-byte query", False, 40),
    ):
        total, last = run(path, hour_first, pad, args.batches, args.rows)
        out[name] = {"total_s": round(total, 1), "last_batch_s": round(last, 2)}
        totals[name] = total
    out["ratio_hour_first_hashed"] = round(
        totals["hour-first keys, 700-byte query"] / totals["hashed keys, 700-byte query"], 2
    )
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
