"""The demo's dashboards step: the real ``zcp-obs dashboards`` commands against the demo's
operator Prometheus (and, when given, one tenant's own Prometheus).

``dashboards build`` writes ``<workdir>/dashboards/operator/<uid>.json`` and
``<workdir>/dashboards/tenant/<uid>.json`` (the tenant stacks' ``tenants.dashboards_dir`` is
the latter: :func:`build` can run before the reconciler, and building again is byte-identical);
``dashboards check`` lints them and proves every panel's queries against live data; ``dashboards
preview`` draws each to ``<workdir>/dashboards/previews/<audience>/<uid>.png``, with a manifest
``<uid>.json`` of its panels. Every command runs as a subprocess, as an operator would run it; a
failure is a DaemonError carrying the command's last words. Panels without data in the demo
(the metering job does not run in it, for one) are reported, not failed on.
"""

from __future__ import annotations

import json
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import requests
from matplotlib import image as mpimg

from lab.procs import run_checked
from lab.stack import ZCP_OBS
from zcp.errors import DaemonError

log = logging.getLogger(__name__)

# $__rate_interval: well over 4 of the demo's scrape intervals (3s operator, 5s tenants)
RATE_INTERVAL = "1m"
# what `dashboards check --prometheus` reports when the demo simply feeds nothing to a panel;
# any other problem (lint, a query Prometheus refuses, a tenant leak) is a broken dashboard
NO_DATA_RULES = frozenset({"panel-no-data", "variable-no-values"})
PROBLEM = re.compile(r"^(?P<where>.+?): (?P<rule>[a-z]+(?:-[a-z]+)+): (?P<message>.*)$")
PREVIEWED = re.compile(r"^(?P<png>.+\.png): \d+ panels")
# blank(): a pixel is ink when its colour is saturated enough (max - min of R, G, B over the
# 0-1 scale); the previews draw every frame, title, tick and "No data" in near-greys (chroma
# under 0.07) and every value, line and bar in the palette's colours (chroma 0.3 and more)
CHROMA = 0.15
# fewer ink pixels than this is blank: previews with every panel "No data" measured 0, the
# smallest data drawn (a one-digit stat) about 110, a single marker about 15
MIN_INK = 10
# the window drawn and proven: from a little before the Prometheus started, within these bounds
MARGIN_S = 20
WINDOW_MIN_S = 60
WINDOW_MAX_S = 600


def blank(png: Path) -> bool:
    """True when the image at ``png`` shows no data: it is one colour everywhere, or fewer than
    :data:`MIN_INK` of its pixels are ink.

    Ink is a visible pixel (alpha over one half) whose colour is saturated (the spread of its
    R, G, B at least :data:`CHROMA` on a 0-1 scale) and is not the image's most common colour
    (its background). This follows how ``dashboards/preview.py`` draws: background, panel
    boxes, frames, titles, tick labels, legends' text and "No data" are all near-greys, while
    data is drawn in colour (time series lines and markers, stat and gauge values, bar gauges'
    bars). So a preview of frames and titles with every panel saying "No data" is blank (it has
    no ink at all), and one coloured stat value or line is enough not to be. A greyscale image is blank by this rule (it
    cannot tell data from frames), and so is a preview whose only data is in tables (their rows
    are grey text): the rule errs towards "blank", never towards passing an empty preview. It
    is not meant for images whose frames are drawn in colour.
    """
    try:
        pixels = np.asarray(mpimg.imread(png))
    except (OSError, ValueError, SyntaxError) as exc:
        raise DaemonError(f"{png}: not a readable image: {exc}") from None
    if np.issubdtype(pixels.dtype, np.integer):  # a non-PNG read through Pillow: 0-255
        pixels = pixels.astype(np.float64) / np.iinfo(pixels.dtype).max
    if pixels.ndim != 3 or pixels.shape[2] < 3:
        return True  # greyscale: no colour, so no ink (see above)
    rgb = pixels[..., :3].reshape(-1, 3)
    visible = pixels[..., 3].reshape(-1) > 0.5 if pixels.shape[2] == 4 else True
    codes = np.round(rgb * 255).astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])
    colours, counts = np.unique(codes, return_counts=True)
    if len(colours) < 2:
        return True
    chroma = rgb.max(axis=1) - rgb.min(axis=1)
    ink = visible & (chroma >= CHROMA) & (codes != colours[np.argmax(counts)])
    return int(np.count_nonzero(ink)) < MIN_INK


def window(prometheus_url: str, now: float | None = None) -> int:
    """Seconds of data to look at in ``prometheus_url``: from :data:`MARGIN_S` before it
    started (its runtime info) up to now, within :data:`WINDOW_MIN_S`..:data:`WINDOW_MAX_S`,
    so a preview's time axis is the data the demo has, not mostly empty."""
    try:
        resp = requests.get(f"{prometheus_url}/api/v1/status/runtimeinfo", timeout=10)
        resp.raise_for_status()
        started = datetime.fromisoformat(resp.json()["data"]["startTime"]).timestamp()
    except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
        raise DaemonError(
            f"{prometheus_url}: its runtime info: {type(exc).__name__}: {str(exc)[:200]}"
        ) from None
    age = (time.time() if now is None else now) - started
    return int(min(max(age + MARGIN_S, WINDOW_MIN_S), WINDOW_MAX_S))


def _command(log_format: str) -> list[str]:
    return [*ZCP_OBS, "--log-format", log_format, "dashboards"]


def build(workdir: Path, log_format: str = "json") -> Path:
    """``zcp-obs dashboards build --out <workdir>/dashboards``; the directory of the built
    tenant dashboards (``<workdir>/dashboards/tenant``), what ``tenants.dashboards_dir``
    must name."""
    out = workdir / "dashboards"
    run_checked([*_command(log_format), "build", "--out", str(out)], timeout=120)
    tenant = out / "tenant"
    if not any(tenant.glob("*.json")):  # the reconciler would silently give tenants none
        raise DaemonError(f"zcp-obs dashboards build wrote no tenant dashboards in {tenant}")
    return tenant


def _check(
    prometheus_url: str,
    log_format: str,
    tenant: tuple[str, str] | None,
    window_s: int,
) -> list[str]:
    """``dashboards check`` against the live Prometheus; the no-data problems it reported
    (anything else fails the step)."""
    argv = [*_command(log_format), "check", "--prometheus", prometheus_url]
    if tenant is not None:
        argv += ["--tenant-prometheus", tenant[1], "--tenant", tenant[0]]
    argv += ["--window", str(window_s), "--rate-interval", RATE_INTERVAL]
    # exit 1 lists the problems on stdout, one a line: sorted out here, not by the exit code
    proc = run_checked(argv, timeout=300, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode not in (0, 1) or (proc.returncode == 1 and not lines):
        raise DaemonError(
            f"{' '.join(argv)} failed ({proc.returncode}): "
            f"{(proc.stderr or proc.stdout).strip()[-500:]}"
        )
    broken = [
        line
        for line in lines
        if (m := PROBLEM.match(line)) is None or m.group("rule") not in NO_DATA_RULES
    ]
    if broken:
        raise DaemonError(
            f"zcp-obs dashboards check: {len(broken)} problems, first: {broken[0][:300]}"
        )
    return lines


def _preview(
    out: Path, url: str, audience: str, log_format: str, window_s: int
) -> list[dict[str, Any]]:
    """``dashboards preview`` of one audience into ``out``; each PNG with its size, blank()
    verdict, panels and the panels that had no data (from the preview's manifest)."""
    proc = run_checked(
        [
            *_command(log_format),
            "preview",
            "--prometheus",
            url,
            "--out",
            str(out),
            "--audience",
            audience,
            "--window",
            str(window_s),
            "--rate-interval",
            RATE_INTERVAL,
        ],
        timeout=600,
    )
    # the PNGs this run drew, from its own output: not older files left in the directory
    pngs = [
        Path(m.group("png")) for line in proc.stdout.splitlines() if (m := PREVIEWED.match(line))
    ]
    if not pngs:
        raise DaemonError(f"zcp-obs dashboards preview drew no {audience} dashboards in {out}")
    previews = []
    for png in pngs:
        try:
            drawn = json.loads(png.with_suffix(".json").read_text())["panels"]
            size = png.stat().st_size
        except (OSError, ValueError, KeyError) as exc:
            raise DaemonError(f"preview {png}: {exc}") from None
        previews.append(
            {
                "path": str(png),
                "audience": audience,
                "bytes": size,
                "blank": blank(png),
                "panels": len(drawn),
                "no_data": [d["title"] for d in drawn if not d["series"]],
            }
        )
    return previews


def dashboards(
    workdir: Path,
    prometheus_url: str,
    log_format: str = "json",
    tenant: tuple[str, str] | None = None,
    window_s: int | None = None,
) -> dict[str, Any]:
    """Build, check and preview every dashboard with the real ``zcp-obs dashboards`` commands.

    The operator dashboards are checked and drawn from ``prometheus_url`` (the operator
    Prometheus); the tenant dashboards need a tenant's own Prometheus, ``tenant`` = (account
    id, its URL): without it they are built and linted but neither proven nor drawn (against
    the operator Prometheus they would sum every tenant's series). ``window_s``: the seconds
    of data looked at, up to now (default: each Prometheus's age, :func:`window`). Returns (paths as strings, ready for ``summary.json``):
    ``built`` (``<workdir>/dashboards``), ``tenant_dashboards`` (its ``tenant/``, for
    ``tenants.dashboards_dir``), ``previews_dir``, ``previews`` (per PNG: path, audience,
    bytes, blank, panels, no_data: the titles of the panels drawn without data),
    ``check_no_data`` (what the check found without data), ``windows`` (seconds, by
    audience) and ``seconds`` (the step's duration).
    """
    began = time.monotonic()
    out = workdir / "dashboards"
    tenant_dir = build(workdir, log_format)
    windows = {"operator": window_s or window(prometheus_url)}
    if tenant is not None:
        windows["tenant"] = window_s or window(tenant[1])
    previews_dir = out / "previews"
    # the check and the two previews are processes of their own: side by side (2 cores)
    with ThreadPoolExecutor(max_workers=2) as pool:
        # one window for both proofs: the tenant's Prometheus is younger, its data all inside
        checked = pool.submit(_check, prometheus_url, log_format, tenant, windows["operator"])
        drawn = [
            pool.submit(
                _preview,
                previews_dir / "operator",
                prometheus_url,
                "operator",
                log_format,
                windows["operator"],
            )
        ]
        if tenant is not None:
            drawn.append(
                pool.submit(
                    _preview,
                    previews_dir / "tenant",
                    tenant[1],
                    "tenant",
                    log_format,
                    windows["tenant"],
                )
            )
        no_data = checked.result()
        previews = [p for job in drawn for p in job.result()]
    seconds = round(time.monotonic() - began, 1)
    log.info(
        "dashboards built, checked and drawn",
        extra={"previews": len(previews), "no_data": len(no_data), "seconds": seconds},
    )
    return {
        "built": str(out),
        "tenant_dashboards": str(tenant_dir),
        "previews_dir": str(previews_dir),
        "previews": previews,
        "check_no_data": no_data,
        "windows": windows,
        "seconds": seconds,
    }
