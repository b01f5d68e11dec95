"""A local HTTP server that follows Grafana's dashboard and folder HTTP API contract (no Grafana
server can be installed here): the routes, status codes and bodies of Grafana's
``docs/sources/developers/http_api/{dashboard,folder}.md``, with service-account tokens (one org
and role each) and ``X-Grafana-Org-Id``.

* ``GET /api/folders/:uid`` 200 / 404; ``POST /api/folders`` 200 / 400 / 409 (uid or title
  taken);
* ``POST /api/dashboards/db`` 200 ``{id, uid, url, status, version, slug}`` / 400 (no title, uid
  over 40 characters, unknown folder) / 412 ``{status: version-mismatch | name-exists,
  message}`` when not overwriting;
* ``GET`` / ``DELETE /api/dashboards/uid/:uid`` 200 / 404;
* ``GET`` / ``PUT /api/orgs/:id`` 200 ``{id, name, address}`` / ``{message: "Organization
  updated"}``, 404 for an unknown org, 409 for a name another org has (``admin_orgs.md``,
  ``org.md``: basic auth of a server admin only);
* 401 without a known token (or for another org than the token's), 403 for a Viewer writing.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Org:
    """One organisation's folders and dashboards."""

    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)  # uid -> stored
    name: str = "Main Org."


@dataclass
class GrafanaState:
    """What the simulated Grafana holds, and the tokens it accepts: token -> (org, role)."""

    tokens: dict[str, tuple[int, str]] = field(default_factory=dict)
    admins: dict[str, str] = field(default_factory=dict)  # server admins: user -> password
    orgs: dict[int, Org] = field(default_factory=dict)
    requests: list[tuple[str, str, int]] = field(default_factory=list)  # method, path, org
    next_id: int = 1

    def org(self, org_id: int) -> Org:
        return self.orgs.setdefault(org_id, Org())


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


class GrafanaSim:
    """The simulated Grafana on 127.0.0.1 (a free port), in a thread."""

    def __init__(self, state: GrafanaState | None = None) -> None:
        self.state = state or GrafanaState()
        self.lock = threading.Lock()
        sim = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                code, body = sim.handle(method, self.path, dict(self.headers.items()), raw)
                self._send(code, body)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

            def do_PUT(self) -> None:
                self._handle("PUT")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> GrafanaSim:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- the API -------------------------------------------------------------------------------
    def handle(
        self, method: str, path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, dict[str, Any]]:
        auth = {k.lower(): v for k, v in headers.items()}
        if auth.get("authorization", "").startswith("Basic "):
            return self._admin(method, path, auth["authorization"], raw)
        token = auth.get("authorization", "").removeprefix("Bearer ").strip()
        with self.lock:
            if token not in self.state.tokens:
                return 401, {"message": "Invalid API key"}
            org_id, role = self.state.tokens[token]
            asked = auth.get("x-grafana-org-id")
            if asked is not None and asked != str(org_id):
                return 401, {"message": "Unauthorized: the token belongs to another org"}
            self.state.requests.append((method, path, org_id))
            org = self.state.org(org_id)
            if method != "GET" and role == "Viewer":
                return 403, {"message": "Access denied"}
            try:
                body = json.loads(raw) if raw else {}
            except json.JSONDecodeError:
                return 400, {"message": "bad request data"}
            return self._route(method, path.split("?", 1)[0], body, org)

    def _admin(
        self, method: str, path: str, authorization: str, raw: bytes
    ) -> tuple[int, dict[str, Any]]:
        """The admin organisations API: basic auth of a server admin."""
        import base64

        try:
            user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
        except ValueError:
            return 401, {"message": "Invalid Basic Auth Header"}
        with self.lock:
            if self.state.admins.get(user) != password:
                return 401, {"message": "invalid username or password"}
            m = re.fullmatch(r"/api/orgs/(\d+)", path.split("?", 1)[0])
            if not m:
                return 404, {"message": "Not found"}
            org_id = int(m.group(1))
            if org_id not in self.state.orgs:
                return 404, {"message": "Organization not found"}
            org = self.state.orgs[org_id]
            self.state.requests.append((method, path, org_id))
            if method == "GET":
                return 200, {"id": org_id, "name": org.name, "address": {}}
            if method == "PUT":
                name = (json.loads(raw) if raw else {}).get("name")
                if not name:
                    return 400, {"message": "name is required"}
                if any(o.name == name for i, o in self.state.orgs.items() if i != org_id):
                    return 409, {"message": "Organization name taken"}
                org.name = name
                return 200, {"message": "Organization updated"}
            return 405, {"message": "Method not allowed"}

    def _route(
        self, method: str, path: str, body: dict[str, Any], org: Org
    ) -> tuple[int, dict[str, Any]]:
        m = re.fullmatch(r"/api/folders/([^/]+)", path)
        if m and method == "GET":
            folder = org.folders.get(m.group(1))
            return (
                (200, folder)
                if folder
                else (404, {"message": "folder not found", "status": "not-found"})
            )
        if path == "/api/folders" and method == "POST":
            title = body.get("title")
            if not title:
                return 400, {"message": "folder title cannot be empty"}
            uid = body.get("uid") or f"f{self.state.next_id}"
            if uid in org.folders or any(f["title"] == title for f in org.folders.values()):
                return 409, {"message": "a folder with the same name already exists"}
            folder = {
                "id": self.state.next_id,
                "uid": uid,
                "title": title,
                "version": 1,
                "url": f"/dashboards/f/{uid}/{_slug(title)}",
            }
            self.state.next_id += 1
            org.folders[uid] = folder
            return 200, folder
        if path == "/api/dashboards/db" and method == "POST":
            return self._save(body, org)
        m = re.fullmatch(r"/api/dashboards/uid/([^/]+)", path)
        if m:
            stored = org.dashboards.get(m.group(1))
            if stored is None:
                return 404, {"message": "Dashboard not found"}
            if method == "DELETE":
                del org.dashboards[m.group(1)]
                return 200, {"title": stored["dashboard"]["title"], "message": "deleted"}
            return 200, {
                "dashboard": stored["dashboard"],
                "meta": {
                    "folderUid": stored["folderUid"],
                    "url": stored["url"],
                    "version": stored["dashboard"]["version"],
                    "message": stored["message"],
                },
            }
        return 404, {"message": "Not found"}

    def _save(self, body: dict[str, Any], org: Org) -> tuple[int, dict[str, Any]]:
        dash = body.get("dashboard")
        if not isinstance(dash, dict) or not dash.get("title"):
            return 400, {"message": "Dashboard title cannot be empty", "status": "bad-request"}
        uid = str(dash.get("uid") or f"d{self.state.next_id}")
        if len(uid) > 40:
            return 400, {"message": "uid too long, max 40 characters"}
        folder = body.get("folderUid") or ""
        if folder and folder not in org.folders:
            return 400, {"message": "folder not found"}
        overwrite = bool(body.get("overwrite"))
        old = org.dashboards.get(uid)
        same_name = [
            d
            for u, d in org.dashboards.items()
            if u != uid and d["folderUid"] == folder and d["dashboard"]["title"] == dash["title"]
        ]
        if not overwrite:
            if same_name:
                return 412, {
                    "status": "name-exists",
                    "message": "A dashboard with the same name in the folder already exists",
                }
            if old is not None and dash.get("version") != old["dashboard"]["version"]:
                return 412, {
                    "status": "version-mismatch",
                    "message": "The dashboard has been changed by someone else",
                }
        for d in same_name:  # overwriting replaces the other dashboard of that name
            org.dashboards.pop(d["dashboard"]["uid"], None)
        version = (old["dashboard"]["version"] + 1) if old else 1
        ident = old["dashboard"]["id"] if old else self.state.next_id
        self.state.next_id += 1
        slug = _slug(dash["title"])
        stored = {
            "dashboard": {**dash, "uid": uid, "id": ident, "version": version},
            "folderUid": folder,
            "url": f"/d/{uid}/{slug}",
            "message": str(body.get("message", "")),
        }
        org.dashboards[uid] = stored
        return 200, {
            "id": ident,
            "uid": uid,
            "url": stored["url"],
            "status": "success",
            "version": version,
            "slug": slug,
        }
