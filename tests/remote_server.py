"""A local HTTP server for the remote-reading tests and the remote benchmark (127.0.0.1 only).

Routes (``NAME`` is a key of ``files``; a value is bytes or a local Path, served without loading it):

- ``/f/NAME``          byte ranges (206, Content-Range, ETag), 416 past the end
- ``/redirect/NAME``   307 to ``/f/NAME``; ``/away/NAME``: 307 to ``/f/NAME`` on ``localhost`` (another host)
- ``/norange/NAME``    ignores Range: 200 with the whole file
- ``/slow/NAME``       answers after ``slow_seconds``
- ``/auth/NAME``       401 unless ``Authorization: Bearer <token>``; ``/forbidden/NAME``: 403
- ``/short/NAME``      announces the range it was asked for, sends half of it and closes
- ``/changing/NAME``   one byte longer on every request (size and ETag change)
- ``/api/models/OWNER/REPO/tree/REV?recursive=true`` and ``/OWNER/REPO/resolve/REV/PATH``: a Hugging
  Face-like repository over ``repos[OWNER/REPO][PATH]``; resolve answers 302 to ``/f/...`` on ``localhost``
  (as huggingface.co redirects to its storage).

``log`` records (path, Range, Authorization) per request; ``sent`` counts body bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


class ModelServer:
    def __init__(self) -> None:
        self.files: dict[str, bytes | Path] = {}
        self.repos: dict[str, dict[str, bytes | Path]] = {}
        self.token = "hf_secret_token_for_tests"
        self.slow_seconds = 2.0
        self.log: list[tuple[str, str | None, str | None]] = []
        self.sent = 0
        self._changes = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed-ACK stalls

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ModelServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, route: str, name: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/{route}/{name}"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ---- serving

    def _content(self, name: str) -> bytes | Path | None:
        if name.startswith("repo:"):
            repo, _, path = name[5:].partition(":")
            return self.repos.get(repo, {}).get(path)
        return self.files.get(name)

    @staticmethod
    def _size(content: bytes | Path) -> int:
        return content.stat().st_size if isinstance(content, Path) else len(content)

    @staticmethod
    def _slice(content: bytes | Path, start: int, end: int) -> bytes:
        if isinstance(content, Path):
            with open(content, "rb") as f:
                f.seek(start)
                return f.read(end - start)
        return content[start:end]

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        split = urlsplit(h.path)
        path = unquote(split.path)
        with self._lock:
            self.log.append((path, h.headers.get("Range"), h.headers.get("Authorization")))
        parts = path.strip("/").split("/")
        if path.startswith("/api/models/") and len(parts) >= 6 and parts[4] == "tree":
            return self._tree("/".join(parts[2:4]), h)
        if len(parts) >= 5 and parts[2] == "resolve":
            name = "repo:" + "/".join(parts[:2]) + ":" + "/".join(parts[4:])
            return self._redirect(h, f"http://localhost:{self.port}/f/{name}", 302)
        route, name = parts[0], "/".join(parts[1:])
        content = self._content(name)
        if content is None:
            return self._empty(h, 404)
        if route == "redirect":
            return self._redirect(h, f"/f/{name}", 307)
        if route == "away":
            return self._redirect(h, f"http://localhost:{self.port}/f/{name}", 307)
        if route == "auth" and h.headers.get("Authorization") != f"Bearer {self.token}":
            return self._empty(h, 401)
        if route == "forbidden":
            return self._empty(h, 403)
        if route == "slow":
            time.sleep(self.slow_seconds)
        if route == "changing":
            with self._lock:
                self._changes += 1
                content = self._slice(content, 0, self._size(content)) + b"\0" * self._changes
        if route == "norange":
            return self._send(h, 200, content, 0, self._size(content), {})
        self._ranged(h, route, content)

    def _ranged(self, h: BaseHTTPRequestHandler, route: str, content: bytes | Path) -> None:
        size = self._size(content)
        etag = '"' + hashlib.md5(f"{size}".encode()).hexdigest() + '"'
        m = RANGE.match(h.headers.get("Range") or "")
        if not m:
            return self._send(h, 200, content, 0, size, {"ETag": etag})
        start = int(m.group(1))
        end = min(size, int(m.group(2)) + 1) if m.group(2) else size
        if start >= size:
            return self._empty(h, 416, {"Content-Range": f"bytes */{size}"})
        headers = {"ETag": etag, "Content-Range": f"bytes {start}-{end - 1}/{size}"}
        if route == "short":
            data = self._slice(content, start, end)
            h.send_response(206)
            for k, v in headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data[: len(data) // 2])
            h.close_connection = True
            return
        self._send(h, 206, content, start, end, headers)

    def _send(
        self, h: BaseHTTPRequestHandler, status: int, content: bytes | Path, start: int, end: int, headers: dict
    ) -> None:
        h.send_response(status)
        h.send_header("Accept-Ranges", "bytes" if status == 206 else "none")
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(end - start))
        h.end_headers()
        try:
            if isinstance(content, Path):
                with open(content, "rb") as f:
                    f.seek(start)
                    pos = start
                    while pos < end:
                        chunk = f.read(min(end - pos, 1 << 20))
                        if not chunk:
                            break
                        h.wfile.write(chunk)
                        pos += len(chunk)
                        self._count(len(chunk))
            else:
                view = memoryview(content)
                for pos in range(start, end, 1 << 20):
                    chunk = view[pos : min(end, pos + (1 << 20))]
                    h.wfile.write(chunk)
                    self._count(len(chunk))
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True

    def _count(self, n: int) -> None:
        with self._lock:
            self.sent += n

    def _empty(self, h: BaseHTTPRequestHandler, status: int, headers: dict | None = None) -> None:
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", "0")
        h.end_headers()

    def _redirect(self, h: BaseHTTPRequestHandler, location: str, status: int) -> None:
        self._empty(h, status, {"Location": location})

    def _tree(self, repo: str, h: BaseHTTPRequestHandler) -> None:
        files = self.repos.get(repo)
        if files is None:
            return self._empty(h, 404)
        dirs = {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}
        items = [{"type": "directory", "path": d, "size": 0} for d in sorted(dirs)]
        items += [{"type": "file", "path": p, "size": self._size(c)} for p, c in sorted(files.items())]
        body = json.dumps(items).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
