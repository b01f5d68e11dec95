#!/usr/bin/env python3
"""Dashboard build time: ``zcp-obs dashboards build`` (every dashboard, post-processed, linted
separately) vs grafanalib's own ``generate-dashboards`` on the same definition files, each as
a fresh process (what CI and a person run), best of --runs; and the in-process build and lint
alone. Ratios ours / grafanalib."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dashboards.build import build_all, sources, write
from dashboards.lint import lint

BIN = Path(sys.executable).parent


def best(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="zcp-bench-dashboards-"))
    try:
        files = sources()
        ours = best(
            [str(BIN / "zcp-obs"), "dashboards", "build", "--out", str(out / "ours")], args.runs
        )
        # grafanalib's command writes <name>.json next to each definition: on copies
        copies = out / "defs"
        copies.mkdir()
        for f in files:
            shutil.copy(f, copies / f.name)
        theirs = best(
            [str(BIN / "generate-dashboards"), *map(str, sorted(copies.glob("*.dashboard.py")))],
            args.runs,
        )
        t = time.perf_counter()
        for _ in range(args.runs):
            built = build_all()
        in_process = (time.perf_counter() - t) / args.runs
        t = time.perf_counter()
        for _ in range(args.runs):
            problems = lint(built)
        linted = (time.perf_counter() - t) / args.runs
        t = time.perf_counter()
        write(out / "again", built)
        written = time.perf_counter() - t
        panels = sum(len(b.doc.get("panels", [])) for b in built)
        print(
            json.dumps(
                {
                    "dashboards": len(built),
                    "panels": panels,
                    "lint_problems": len(problems),
                    "ours_build_command_s": round(ours, 3),
                    "grafanalib_generate_dashboards_s": round(theirs, 3),
                    "ratio_ours_grafanalib": round(ours / theirs, 2),
                    "in_process_build_s": round(in_process, 4),
                    "in_process_lint_s": round(linted, 4),
                    "write_s": round(written, 4),
                },
                indent=2,
            )
        )
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
