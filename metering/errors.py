"""Metering's expected failures (the CLI prints them as one line)."""

from __future__ import annotations

from zcp.errors import ZcpError


class MeteringError(ZcpError):
    """A metering run, report or price book cannot be done as asked."""


class PriceBookError(MeteringError):
    """The price book is invalid; the message names the entry."""


class SourceError(MeteringError):
    """The query API is unreachable or answered with an error; nothing was written."""


class LockedError(MeteringError):
    """Another metering run holds the database lock."""
