"""Small figures shared by the benchmarks."""

from __future__ import annotations


def p95(xs: list[float]) -> float:
    """The 95th percentile (nearest rank) of ``xs``."""
    return sorted(xs)[max(0, round(0.95 * len(xs)) - 1)]


def count_series(text: str) -> int:
    """Series in an exposition text (non-comment, non-empty lines)."""
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))
