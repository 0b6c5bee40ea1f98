"""``library serve``: the catalog on a local web page (stdlib ``ThreadingHTTPServer``).

Safety: bound to 127.0.0.1 by default; requests whose Host header is not the loopback address are
refused (DNS rebinding), the one state-changing request (POST /plan/run) needs the per-process
token embedded in the page, and the only files served from disk are the package's static assets and
sidecars of catalogued models whose real path (symlinks resolved) lies under a catalog root, no
bigger than MAX_SIDECAR_BYTES; pictures only when their first bytes say they are PNG, JPEG, WebP
or GIF (the Content-Type comes from those bytes, never from the name).

Language: ``?lang=ru|en`` (remembered in a cookie), else the cookie, else the server's language
(``sdmodel --lang ru library serve``, or the environment's); set per request, as each request runs
in its own thread.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import threading
import time
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from sdmodel.i18n import Language, _, current_language, parse_language, set_language
from sdmodel.library.apply import ApplyEvent, ApplyStarted, BytesWritten, ItemFinished, ItemStarted, apply_plan
from sdmodel.library.catalog import Catalog
from sdmodel.library.savings import compute_plan
from sdmodel.web import pages

STATIC = {"style.css": "text/css; charset=utf-8", "app.js": "text/javascript; charset=utf-8"}
TEXT_SIDECARS = (".yaml", ".yml", ".json", ".txt", ".info")
MAX_SIDECAR_BYTES = 16 << 20  # a preview is a few MB at most; bigger files are not served
LANG_COOKIE = "sdmodel_lang"
SIDECAR_CSP = "sandbox; default-src 'none'"
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

    def _on_event(self, ev: ApplyEvent) -> None:
        if isinstance(ev, ApplyStarted):
            self._update(items=ev.items, overall_total=ev.bytes_total)
        elif isinstance(ev, ItemStarted):
            self._update(index=ev.index, current=os.path.basename(ev.src))
        elif isinstance(ev, BytesWritten):
            self._update(overall_done=ev.overall_done)
        elif isinstance(ev, ItemFinished):
            with self.lock:
                key = "done" if ev.status == "done" else "failed" if ev.status == "failed" else None
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

    def __init__(
        self, db_path: Path, host: str = "127.0.0.1", port: int = 8765, language: Language | None = None
    ) -> None:
        self.db_path = Path(db_path)
        # The requests run in threads of their own, which do not see the language set in this one.
        self.language: Language = language or current_language()
        Catalog(self.db_path, create=False).close()  # fail early without a catalog
        self.token = secrets.token_urlsafe(24)
        self.runner = PlanRunner(self.db_path)
        self.check_host = host in LOOPBACK_HOSTS
        super().__init__((host, port), Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        if isinstance(host, bytes):
            host = host.decode()
        return f"http://{host}:{port}/"


class Handler(BaseHTTPRequestHandler):
    server: LibraryServer
    server_version = "sdmodel"
    sys_version = ""
    set_cookie = ""  # the language cookie this response sets (?lang=)

    def log_message(self, format: str, *args: Any) -> None:
        if os.environ.get("SDMODEL_WEB_LOG"):
            super().log_message(format, *args)

    # -- plumbing ----------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        if self.set_cookie:
            self.send_header("Set-Cookie", self.set_cookie)
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
        self._send(status, f"{int(status)} {message}\n".encode(), "text/plain; charset=utf-8")

    def _host_ok(self) -> bool:
        if not self.server.check_host:
            return True
        host = (self.headers.get("Host") or "").strip()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name.lower() in LOOPBACK_HOSTS

    def _choose_language(self, query: dict[str, str]) -> None:
        """This request's language: ``?lang=`` (then kept in a cookie), the cookie, the server's."""
        self.set_cookie = ""
        asked = parse_language(query.pop("lang", None))
        if asked is not None:
            self.set_cookie = f"{LANG_COOKIE}={asked}; Path=/; Max-Age=31536000; SameSite=Strict; HttpOnly"
        else:
            try:
                morsel = SimpleCookie(self.headers.get("Cookie") or "").get(LANG_COOKIE)
            except CookieError:
                morsel = None
            asked = parse_language(morsel.value) if morsel is not None else None
        set_language(asked or self.server.language)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        raw_path = urlsplit(self.path).path
        query = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
        self._choose_language(query)
        if not self._host_ok():
            self._error(HTTPStatus.MISDIRECTED_REQUEST, _("unexpected Host header"))
            return
        pages.set_request(raw_path, query)
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
                self._html(pages.not_found_page(cat, _("No such model in the catalog.")), 404)
            else:
                self._html(pages.model_page(cat, f))
        elif raw_path == "/duplicates":
            self._html(pages.duplicates_page(cat))
        elif raw_path == "/problems":
            self._html(pages.problems_page(cat))
        elif raw_path == "/plan":
            self._html(pages.plan_page(cat, self.server.runner.snapshot(), self.server.token))
        elif raw_path == "/usage":
            self._html(pages.usage_page(cat))
        elif raw_path == "/api/progress":
            state = self.server.runner.snapshot()
            state["text"] = pages.state_text(state)  # in the page's language, for its script
            self._send(200, json.dumps(state).encode(), "application/json")
        elif raw_path.startswith("/static/"):
            self._static(raw_path[len("/static/") :])
        elif raw_path.startswith("/sidecar/"):
            self._sidecar(cat, raw_path[len("/sidecar/") :])
        elif raw_path.startswith("/preview/"):
            self._preview(cat, raw_path[len("/preview/") :])
        elif raw_path == "/favicon.ico":
            self._send(204, b"", "image/x-icon")
        else:
            self._error(404, _("not found"))

    def _static(self, name: str) -> None:
        # Only the fixed names of the package's own assets: nothing from the request reaches the disk.
        ctype = STATIC.get(name)
        if ctype is None:
            self._error(404, _("not found"))
            return
        data = resources.files("sdmodel.web").joinpath("static").joinpath(name).read_bytes()
        self._send(200, data, ctype)

    def _sidecar(self, cat: Catalog, rest: str) -> None:
        """``/sidecar/<model id>/<sidecar name>``: only a sidecar recorded for that model, only if
        its real path is inside a catalog root."""
        id_part, _sep, raw_name = rest.partition("/")
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
            self._error(404, _("not found"))
            return
        path = sidecar_path(cat, f["path"], name)
        if path is None:
            self._error(403, _("outside the catalog's roots"))
            return
        data = _read_capped(path)
        if data is None:
            self._error(413, _("too big or unreadable"))
            return
        ext = os.path.splitext(name)[1].lower()
        ctype = image_type(data)
        if name.lower().endswith(pages.IMAGE_EXTENSIONS) and ctype is None:
            self._error(415, _("not a PNG, JPEG, WebP or GIF picture"))
            return
        if ctype is None:
            ctype = "text/plain; charset=utf-8" if ext in TEXT_SIDECARS else "application/octet-stream"
        disposition = "inline" if ctype != "application/octet-stream" else "attachment"
        self._send(200, data, ctype, {"Content-Security-Policy": SIDECAR_CSP, "Content-Disposition": disposition})

    def _preview(self, cat: Catalog, id_part: str) -> None:
        """``/preview/<model id>``: the model's picture, a preview image beside it (checked as
        /sidecar checks it) or the ModelSpec thumbnail in its metadata (a base64 data: URI)."""
        f = _get_model(cat, id_part)
        data: bytes | None = None
        if f is not None and f.get("preview") and f["preview"] in (f.get("sidecars") or []):
            path = sidecar_path(cat, f["path"], f["preview"])
            data = _read_capped(path) if path is not None else None
        elif f is not None and f.get("thumbnail"):
            data = thumbnail_bytes(((f.get("report") or {}).get("metadata") or {}).get("modelspec.thumbnail"))
        ctype = image_type(data) if data else None
        if data is None or ctype is None:
            self._error(404, _("no picture"))
            return
        self._send(200, data, ctype, {"Content-Security-Policy": SIDECAR_CSP, "Content-Disposition": "inline"})

    def do_POST(self) -> None:
        self._choose_language({})
        if not self._host_ok():
            self._error(HTTPStatus.MISDIRECTED_REQUEST, _("unexpected Host header"))
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > 10_000:
            self._error(413, _("request too large"))
            return
        form = dict(parse_qsl(self.rfile.read(length).decode("utf-8", "replace")))
        if urlsplit(self.path).path != "/plan/run":
            self._error(404, _("not found"))
            return
        origin = self.headers.get("Origin")
        if not secrets.compare_digest(form.get("token", ""), self.server.token) or (
            origin and self.server.check_host and urlsplit(origin).hostname not in LOOPBACK_HOSTS
        ):
            self._error(403, _("bad or missing token"))
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


def image_type(data: bytes) -> str | None:
    """The Content-Type of a PNG, JPEG, WebP or GIF picture, from its first bytes; None for
    anything else (SVG included: it can carry script)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return None


def thumbnail_bytes(uri: object) -> bytes | None:
    """The picture in a ModelSpec ``modelspec.thumbnail`` (``data:image/...;base64,...``)."""
    if not isinstance(uri, str) or not uri.startswith("data:image/") or len(uri) > MAX_SIDECAR_BYTES * 4 // 3 + 100:
        return None
    header, _sep, payload = uri.partition(",")
    if not header.endswith(";base64"):
        return None
    try:
        return base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def _read_capped(path: Path) -> bytes | None:
    """A sidecar's bytes, or None when it is bigger than MAX_SIDECAR_BYTES or cannot be read."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_SIDECAR_BYTES + 1)
    except OSError:
        return None
    return data if len(data) <= MAX_SIDECAR_BYTES else None


def make_server(
    db_path: str | Path, host: str = "127.0.0.1", port: int = 8765, language: Language | None = None
) -> LibraryServer:
    return LibraryServer(Path(db_path), host, port, language)
