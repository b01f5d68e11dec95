"""A unixctl (JSON-RPC over a unix socket) client with a real deadline.

``ovs-appctl`` speaks this protocol to ``ovs-vswitchd``'s control socket; so does the ``ovs``
library's ``UnixctlClient``, but its calls block without a timeout. Here every call has one
(a hung ovs-vswitchd costs one collector, not the scrape).
"""

from __future__ import annotations

import itertools
import json
import socket
import time
from typing import Any

from zcp.errors import ZcpError

_ids = itertools.count(1)


class UnixctlError(ZcpError):
    """The daemon did not answer in time, is not there, or answered with an error."""


class UnixctlTimeout(UnixctlError):
    """The daemon accepted the call but did not answer within the deadline (hung?)."""


class UnixctlReplyError(UnixctlError):
    """The daemon answered, with an error (``reply``: its own words, e.g. ``Not found`` from
    ``ovs/route/lookup``): the command ran, so this is an answer, not a broken channel."""

    def __init__(self, message: str, reply: str) -> None:
        super().__init__(message)
        self.reply = reply


def call(path: str, method: str, params: list[str] | None = None, timeout: float = 2.0) -> str:
    """Run ``method`` on the unixctl socket ``path``; its text result."""
    deadline = time.monotonic() + timeout
    request = {"method": method, "params": params or [], "id": next(_ids)}
    decoder = json.JSONDecoder()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(json.dumps(request).encode())
            buf = ""
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                sock.settimeout(remaining)
                chunk = sock.recv(65536)
                if not chunk:
                    raise UnixctlError(f"{path}: connection closed during {method}")
                buf += chunk.decode(errors="replace")
                try:
                    reply, _ = decoder.raw_decode(buf.lstrip())
                except ValueError:
                    continue  # not complete yet
                break
    except TimeoutError:
        raise UnixctlTimeout(f"{path}: no answer to {method} within {timeout:.1f}s") from None
    except OSError as exc:
        raise UnixctlError(f"{path}: {method}: {exc.strerror or exc}") from None
    return _result(reply, path, method)


def _result(reply: Any, path: str, method: str) -> str:
    if not isinstance(reply, dict):
        raise UnixctlError(f"{path}: {method}: unexpected reply {reply!r:.100}")
    if reply.get("error") == "":
        return ""  # e.g. dpctl/show without any datapath: nothing to say, not a failure
    if reply.get("error") is not None:
        said = str(reply["error"]).strip()
        raise UnixctlReplyError(f"{path}: {method}: {said}", said)
    return str(reply.get("result") or "")
