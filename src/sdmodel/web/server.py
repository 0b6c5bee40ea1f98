"""``library serve``: the catalog on a local web page (stdlib ``ThreadingHTTPServer``).

Safety: bound to 127.0.0.1 by default; requests whose Host header is not the loopback address are
refused (DNS rebinding), the one state-changing request (POST /plan/run) needs the per-process
token embedded in the page, and the only files served from disk are the package's static assets and
sidecars of catalogued models whose real path (symlinks resolved) lies under a catalog root.
"""

from __future__ import annotations

import json
import mimetypes
import os
import secrets
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from sdmodel.library.apply import apply_plan
from sdmodel.library.catalog import Catalog
from sdmodel.library.savings import compute_plan
from sdmodel.web import pages

STATIC = {"style.css": "text/css; charset=utf-8", "app.js": "text/javascript; charset=utf-8"}
TEXT_SIDECARS = (".yaml", ".yml", ".json", ".txt", ".info")
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


class PlanRunner:
    """Runs the savings plan in a background thread and keeps its progress for /api/progress."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.state: dict[str, Any] = {"state": "idle"}

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return dict(self.state)

    def start(self) -> bool:
        """Start a run; False if one is already running."""
        with self.lock:
            if self.thread is not None and self.thread.is_alive():
                return False
            self.state = {
                "state": "running",
                "index": 0,
                "items": 0,
                "current": "",
                "overall_done": 0,
                "overall_total": 0,
                "done": 0,
                "failed": 0,
                "saved_bytes": 0,
                "error": None,
                "started": time.time(),
            }
            self.thread = threading.Thread(target=self._run, name="sdmodel-plan", daemon=True)
            self.thread.start()
            return True

    def _update(self, **values: Any) -> None:
        with self.lock:
            self.state.update(values)

    def _on_event(self, ev: dict[str, Any]) -> None:
        t = ev["type"]
        if t == "start":
            self._update(items=ev["items"], overall_total=ev["bytes_total"])
        elif t == "item":
            self._update(index=ev["index"], current=os.path.basename(ev["src"]))
        elif t == "bytes":
            self._update(overall_done=ev["overall_done"])
        elif t == "item_done":
            with self.lock:
                key = "done" if ev["status"] == "done" else "failed" if ev["status"] == "failed" else None
                if key:
                    self.state[key] += 1

    def _run(self) -> None:
        error = None
        stats = None
        try:
            with Catalog(self.db_path, create=False) as cat:
                cat.clear_finished_plan()
                cat.store_plan(compute_plan(cat).items)
                stats = apply_plan(cat, on_event=self._on_event)
        except Exception as e:  # shown on the page, never a traceback
            error = str(e) or type(e).__name__
        with self.lock:
            self.state["state"] = "finished"
            self.state["error"] = error
            self.state["finished"] = time.time()
            if stats is not None:
                self.state["saved_bytes"] = stats.before_bytes - stats.after_bytes
                self.state["overall_done"] = self.state["overall_total"]


class LibraryServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, db_path: Path, host: str = "127.0.0.1", port: int = 8765) -> None:
        self.db_path = Path(db_path)
        Catalog(self.db_path, create=False).close()  # fail early without a catalog
        self.token = secrets.token_urlsafe(24)
        self.runner = PlanRunner(self.db_path)
        self.check_host = host in LOOPBACK_HOSTS
        super().__init__((host, port), Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


class Handler(BaseHTTPRequestHandler):
    server: LibraryServer
    server_version = "sdmodel"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        if os.environ.get("SDMODEL_WEB_LOG"):
            super().log_message(format, *args)

    # -- plumbing ----------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _html(self, text: str, status: int = 200) -> None:
        self._send(status, text.encode("utf-8"), "text/html; charset=utf-8")

    def _error(self, status: int, message: str) -> None:
        self._send(status, f"{status} {message}\n".encode(), "text/plain; charset=utf-8")

    def _host_ok(self) -> bool:
        if not self.server.check_host:
            return True
        host = (self.headers.get("Host") or "").strip()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name.lower() in LOOPBACK_HOSTS

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if not self._host_ok():
            self._error(HTTPStatus.MISDIRECTED_REQUEST, "unexpected Host header")
            return
        raw_path = urlsplit(self.path).path
        query = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
        try:
            with Catalog(self.server.db_path, create=False) as cat:
                self._route_get(cat, raw_path, query)
        except BrokenPipeError:
            pass

    def _route_get(self, cat: Catalog, raw_path: str, query: dict[str, str]) -> None:
        if raw_path == "/":
            self._html(pages.list_page(cat, query))
        elif raw_path.startswith("/model/"):
            f = _get_model(cat, raw_path[len("/model/") :])
            if f is None:
                self._html(pages.not_found_page(cat, "No such model in the catalog."), 404)
            else:
                self._html(pages.model_page(cat, f))
        elif raw_path == "/duplicates":
            self._html(pages.duplicates_page(cat))
        elif raw_path == "/problems":
            self._html(pages.problems_page(cat))
        elif raw_path == "/plan":
            self._html(pages.plan_page(cat, self.server.runner.snapshot(), self.server.token))
        elif raw_path == "/api/progress":
            self._send(200, json.dumps(self.server.runner.snapshot()).encode(), "application/json")
        elif raw_path.startswith("/static/"):
            self._static(raw_path[len("/static/") :])
        elif raw_path.startswith("/sidecar/"):
            self._sidecar(cat, raw_path[len("/sidecar/") :])
        elif raw_path == "/favicon.ico":
            self._send(204, b"", "image/x-icon")
        else:
            self._error(404, "not found")

    def _static(self, name: str) -> None:
        # Only the fixed names of the package's own assets: nothing from the request reaches the disk.
        ctype = STATIC.get(name)
        if ctype is None:
            self._error(404, "not found")
            return
        data = resources.files("sdmodel.web").joinpath("static", name).read_bytes()
        self._send(200, data, ctype)

    def _sidecar(self, cat: Catalog, rest: str) -> None:
        """``/sidecar/<model id>/<sidecar name>``: only a sidecar recorded for that model, only if
        its real path is inside a catalog root."""
        id_part, _, raw_name = rest.partition("/")
        f = _get_model(cat, id_part)
        name = unquote(raw_name)
        if (
            f is None
            or not name
            or name in (".", "..")
            or "/" in name
            or "\\" in name
            or "\x00" in name
            or name not in (f.get("sidecars") or [])
        ):
            self._error(404, "not found")
            return
        path = sidecar_path(cat, f["path"], name)
        if path is None:
            self._error(403, "outside the catalog's roots")
            return
        ext = os.path.splitext(name)[1].lower()
        if ext in pages.IMAGE_TYPES:
            ctype = pages.IMAGE_TYPES[ext]
        elif ext in TEXT_SIDECARS:
            ctype = "text/plain; charset=utf-8"
        else:
            ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
            if not ctype.startswith("image/") or ctype == "image/svg+xml":
                ctype = "application/octet-stream"
        try:
            data = path.read_bytes()
        except OSError:
            self._error(404, "not found")
            return
        self._send(
            200,
            data,
            ctype,
            {"Content-Security-Policy": "sandbox; default-src 'none'", "Content-Disposition": "inline"},
        )

    def do_POST(self) -> None:
        if not self._host_ok():
            self._error(HTTPStatus.MISDIRECTED_REQUEST, "unexpected Host header")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > 10_000:
            self._error(413, "request too large")
            return
        form = dict(parse_qsl(self.rfile.read(length).decode("utf-8", "replace")))
        if urlsplit(self.path).path != "/plan/run":
            self._error(404, "not found")
            return
        origin = self.headers.get("Origin")
        if not secrets.compare_digest(form.get("token", ""), self.server.token) or (
            origin and self.server.check_host and urlsplit(origin).hostname not in LOOPBACK_HOSTS
        ):
            self._error(403, "bad or missing token")
            return
        self.server.runner.start()
        self._send(303, b"", "text/plain", {"Location": "/plan"})


def _get_model(cat: Catalog, id_text: str) -> dict[str, Any] | None:
    id_text = id_text.strip("/")
    if not id_text.isdigit() or len(id_text) > 18:
        return None
    return cat.get(int(id_text))


def sidecar_path(cat: Catalog, model_path: str, name: str) -> Path | None:
    """The real path of a model's sidecar, or None when it resolves outside every catalog root."""
    candidate = Path(model_path).parent / name
    try:
        real = Path(os.path.realpath(candidate))
    except (OSError, ValueError):
        return None
    for root in cat.roots():
        real_root = Path(os.path.realpath(root))
        if real_root in real.parents and real.is_file():
            return real
    return None


def make_server(db_path: str | Path, host: str = "127.0.0.1", port: int = 8765) -> LibraryServer:
    return LibraryServer(Path(db_path), host, port)
