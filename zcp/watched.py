"""A file's parsed content, reloaded when it (or a file it names) changes: the web config of the
shared HTTP server, the gate's tokens. ``current()`` costs a ``stat`` per watched file; a
change is parsed again, and a parse that fails keeps the last good value (logged once per
failing stretch, counted), so a half-edited file never takes a server down."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from zcp.errors import ConfigError

log = logging.getLogger(__name__)
T = TypeVar("T")
Stamp = tuple[tuple[int, int, int] | None, ...]


class Watched(Generic[T]):
    """``load(path) -> (value, other files it read)``, kept current. The first load happens
    at once and its ConfigError is the caller's (a bad file at start is one line)."""

    def __init__(self, path: Path, load: Callable[[Path], tuple[T, tuple[Path, ...]]], what: str):
        self.path = path
        self.what = what
        self._load = load
        self._lock = threading.Lock()
        self.value, self._files = load(path)
        self._stamp = self._stat()
        self.reloads_ok = 1
        self.reloads_failed = 0
        self.last_ok = True

    def _stat(self) -> Stamp:
        out: list[tuple[int, int, int] | None] = []
        for p in (self.path, *self._files):
            try:
                st = os.stat(p)
                out.append((st.st_ino, st.st_mtime_ns, st.st_size))
            except OSError:
                out.append(None)
        return tuple(out)

    def current(self) -> T:
        stamp = self._stat()
        if stamp == self._stamp:
            return self.value
        with self._lock:
            if stamp != self._stamp:
                try:
                    self.value, self._files = self._load(self.path)
                except ConfigError as exc:
                    self.reloads_failed += 1
                    if self.last_ok:
                        log.error(
                            f"{self.what} reload failed; keeping the last good one",
                            extra={"path": str(self.path), "error": str(exc)},
                        )
                    self.last_ok = False
                else:
                    self.reloads_ok += 1
                    self.last_ok = True
                    log.info(f"{self.what} loaded", extra={"path": str(self.path)})
                self._stamp = self._stat()
        return self.value
