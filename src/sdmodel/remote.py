"""Model files on the web, read by byte ranges: a file's insides without downloading it.

A :class:`RemotePath` names a file (``https://...``, ``http://...``) or a Hugging Face file or folder
(``hf://OWNER/REPO[@REV]/PATH``, resolved to ``https://huggingface.co/OWNER/REPO/resolve/REV/PATH``;
``HF_ENDPOINT`` overrides the host, as in huggingface_hub). It offers the part of the ``pathlib`` API
the readers use, and :meth:`RemotePath.open` returns a seekable binary file whose reads become HTTP
``Range`` requests on one shared connection pool. Readers therefore fetch only what they read: a
safetensors header, a zip's directory and pickles, a GGUF tensor table.

Safety: redirects are followed by hand so that a token (``HF_TOKEN``, ``CIVITAI_TOKEN``) is sent only
to its own host, never to the storage a download URL redirects to; URLs after a redirect (signed
storage links) and tokens never appear in messages. A server that ignores ``Range`` and starts
sending the whole file is stopped after :data:`IGNORED_RANGE_LIMIT` bytes. A file whose size or
ETag changes between two requests is an error. Tensor values are fetched only when the path was
opened with ``read_data=True`` (the CLI's ``--read-data``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urljoin, urlsplit

from sdmodel.errors import RemoteError
from sdmodel.i18n import Bytes, Msg, Size, msg_n

if TYPE_CHECKING:
    import httpx

REMOTE_PREFIXES = ("http://", "https://", "hf://")
HEAD_BLOCK = 64 * 1024  # first request: sniffing, a safetensors header or a GGUF table usually fit
SMALL_READ = 16 * 1024  # read-ahead for other small reads (zip local headers, pickle records)
IGNORED_RANGE_LIMIT = 1024 * 1024  # bytes accepted from a server that ignores Range
METADATA_BUDGET = 256 * 1024 * 1024  # bytes of one file read for its structure before refusing
MAX_REQUESTS = 4096  # requests for one file before refusing
CACHE_LIMIT = 64 * 1024 * 1024  # fetched bytes kept per file
KEEP_FILES = 16  # files whose fetched bytes are kept (a diffusers repo opens several at once)
MAX_REDIRECTS = 10
PREFETCH_GAP = 64 * 1024  # prefetched ranges closer than this are fetched as one
PREFETCH_THREADS = 8
DEFAULT_TIMEOUT = 30.0
TOKEN_ENV = {"HF_TOKEN": ("huggingface.co", "hf.co"), "CIVITAI_TOKEN": ("civitai.com",)}
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_UNSATISFIED_RANGE = re.compile(r"^bytes \*/(\d+)$")


_SECRET_QUERY = re.compile(r"([?&](?:token|access_token|api_key|apikey|key|sig|signature)=)[^&#]*", re.IGNORECASE)


def redact(url: str) -> str:
    """The URL as it may be shown: secrets in its query (Civitai's ``?token=``) replaced by ``***``."""
    return _SECRET_QUERY.sub(r"\1***", url)


def is_remote(path: object) -> bool:
    """Whether ``path`` names a remote file: a RemotePath, or a string with a remote scheme."""
    return isinstance(path, RemotePath) or (isinstance(path, str) and path.startswith(REMOTE_PREFIXES))


# ------------------------------------------------------------------------------------------- metering


@dataclass
class Meter:
    """Bytes and requests spent while a :func:`measure` block runs. ``data_bytes``: the part spent
    on tensor values (``--read-data``)."""

    bytes_read: int = 0
    data_bytes: int = 0
    requests: int = 0

    def summary(self, size: int | None = None) -> Msg:
        """``read 212 KB of 23.8 GB in 3 requests`` (+ the tensor-data part when there is one)."""
        n, read = self.requests, Size(self.bytes_read)
        if size:
            text = msg_n(
                "read {read} of {size} in {n} request",
                "read {read} of {size} in {n} requests",
                n,
                read=read,
                size=Size(size),
                n=n,
            )
        else:
            text = msg_n("read {read} in {n} request", "read {read} in {n} requests", n, read=read, n=n)
        if self.data_bytes:
            return Msg("{read} ({data} of it tensor values, for --read-data)", read=text, data=Size(self.data_bytes))
        return text


_meters: list[Meter] = []
_meter_lock = threading.Lock()


@contextlib.contextmanager
def measure() -> Iterator[Meter]:
    """Count the remote bytes read inside the block (all remote files, all threads)."""
    m = Meter()
    with _meter_lock:
        _meters.append(m)
    try:
        yield m
    finally:
        with _meter_lock:
            _meters.remove(m)


def _count(nbytes: int, data: bool) -> None:
    with _meter_lock:
        for m in _meters:
            m.bytes_read += nbytes
            m.requests += 1
            if data:
                m.data_bytes += nbytes


# ------------------------------------------------------------------------------------------- HTTP client

_client: httpx.Client | None = None
_client_pid = 0
_client_lock = threading.Lock()


def timeout() -> float:
    """Seconds to wait for a connection or for the next bytes of an answer (``SDMODEL_TIMEOUT``)."""
    try:
        return float(os.environ.get("SDMODEL_TIMEOUT", DEFAULT_TIMEOUT))
    except ValueError:
        return DEFAULT_TIMEOUT


def client() -> httpx.Client:
    """The process's HTTP client (one connection pool; a new one after a fork)."""
    global _client, _client_pid
    with _client_lock:
        if _client is None or _client_pid != os.getpid():
            import httpx  # noqa: PLC0415 - only when a URL is read

            from sdmodel import __version__  # noqa: PLC0415 - sdmodel/__init__ imports the readers, which import this

            _client = httpx.Client(
                follow_redirects=False,  # by hand: tokens must not follow a redirect to another host
                timeout=httpx.Timeout(timeout()),
                limits=httpx.Limits(max_connections=2 * PREFETCH_THREADS, max_keepalive_connections=PREFETCH_THREADS),
                headers={"User-Agent": f"sdmodel/{__version__}", "Accept-Encoding": "identity"},
            )
            _client_pid = os.getpid()
        return _client


def _token_for(url: str) -> tuple[str, str] | None:
    """(environment variable, token) to send to this URL's host, if any."""
    host = (urlsplit(url).hostname or "").lower()
    for env, hosts in _token_hosts().items():
        if host in hosts:  # exactly: not the storage subdomains a download redirects to (cdn-lfs.hf.co)
            value = os.environ.get(env, "").strip()
            return (env, value) if value else (env, "")
    return None


def _token_hosts() -> dict[str, tuple[str, ...]]:
    hosts = dict(TOKEN_ENV)
    endpoint = os.environ.get("HF_ENDPOINT")
    if endpoint:
        host = urlsplit(endpoint).hostname
        if host:
            hosts["HF_TOKEN"] = (*hosts["HF_TOKEN"], host.lower())
    return hosts


def _headers_for(url: str, extra: dict[str, str]) -> dict[str, str]:
    headers = dict(extra)
    token = _token_for(url)
    if token and token[1]:
        headers["Authorization"] = f"Bearer {token[1]}"
    return headers


@dataclass
class _Answer:
    status: int
    body: bytes
    headers: dict[str, str]
    final_url: str


def _status_error(display: str, status: int, url: str) -> RemoteError:
    token = _token_for(url)
    if status == 401:
        if token and not token[1]:
            hint: Msg | str = Msg("; set {variable} to a token that may read it", variable=token[0])
        elif token:
            hint = Msg("; the token in {variable} was refused", variable=token[0])
        else:
            hint = ""
        return RemoteError(
            Msg("{display}: 401 Unauthorized (the server wants a login{hint})", display=display, hint=hint), "http-401"
        )
    if status == 403:
        return RemoteError(
            Msg(
                "{display}: 403 Forbidden (gated or private: accept its terms on the model page, or use a token with access)",
                display=display,
            ),
            "http-403",
        )
    if status == 404:
        return RemoteError(Msg("{display}: 404 Not Found", display=display), "http-404")
    return RemoteError(
        Msg("{display}: the server answered HTTP {status}", display=display, status=status), f"http-{status}"
    )


def _request(display: str, url: str, headers: dict[str, str], limit: int, ranged: bool) -> _Answer:
    """GET ``url`` following redirects; read at most ``limit`` bytes of the body. A ranged GET that
    gets a plain 200 (the whole file) is stopped after ``IGNORED_RANGE_LIMIT`` bytes."""
    import httpx  # noqa: PLC0415 - only when a URL is read

    c = client()
    try:
        for _ in range(MAX_REDIRECTS + 1):
            with c.stream("GET", url, headers=_headers_for(url, headers)) as r:
                if r.is_redirect:
                    location = r.headers.get("location")
                    if not location:
                        raise RemoteError(Msg("{display}: redirect without a Location header", display=display))
                    url = urljoin(url, location)
                    continue
                if r.status_code >= 400 and r.status_code != 416:
                    raise _status_error(display, r.status_code, url)
                hdrs = {k.lower(): v for k, v in r.headers.items()}
                if ranged and r.status_code == 200:
                    body = _read_body(r, IGNORED_RANGE_LIMIT + 1)
                    if len(body) > IGNORED_RANGE_LIMIT:
                        total = hdrs.get("content-length")
                        size: Msg | str = Msg(" ({size})", size=Size(int(total))) if total and total.isdigit() else ""
                        raise RemoteError(
                            Msg(
                                "{display}: the server ignores Range requests and started sending the whole file{size}; stopped after {limit} (download it instead)",
                                display=display,
                                size=size,
                                limit=Size(IGNORED_RANGE_LIMIT),
                            ),
                            "range-ignored",
                        )
                else:
                    body = _read_body(r, limit)
                return _Answer(r.status_code, body, hdrs, url)
        raise RemoteError(
            Msg("{display}: more than {max_redirects} redirects", display=display, max_redirects=MAX_REDIRECTS)
        )
    except httpx.TimeoutException:
        raise RemoteError(
            Msg("{display}: no answer within {timeout:g} s (timeout)", display=display, timeout=timeout()), "timeout"
        ) from None
    except httpx.ConnectError:
        raise RemoteError(
            Msg("{display}: cannot connect to {hostname}", display=display, hostname=urlsplit(url).hostname), "connect"
        ) from None
    except (httpx.RemoteProtocolError, httpx.ReadError):
        raise RemoteError(
            Msg("{display}: the connection broke in the middle of an answer (truncated)", display=display), "truncated"
        ) from None
    except httpx.HTTPError as e:
        raise RemoteError(Msg("{display}: {type_name}", display=display, type_name=type(e).__name__), "http") from None


def _read_body(r: httpx.Response, limit: int) -> bytes:
    out = bytearray()
    for chunk in r.iter_raw():
        out += chunk
        if len(out) >= limit:
            break
    return bytes(out[:limit]) if len(out) > limit else bytes(out)


# ------------------------------------------------------------------------------------------- one remote file


class _RemoteFile:
    """What is known of one remote file: size, ETag, the final URL after redirects, a bounded cache
    of fetched spans. Thread-safe (prefetching fetches ranges in parallel)."""

    def __init__(self, display: str, url: str, read_data: bool) -> None:
        self.display = display
        self.url = url
        self.read_data = read_data
        self.final_url: str | None = None
        self.size = -1
        self.etag: str | None = None
        self.metadata_bytes = 0
        self.requests = 0
        self._spans: list[tuple[int, bytes]] = []
        self._lock = threading.Lock()

    # ---- fetching

    def start(self) -> None:
        """First request: the head block, which also gives the size and the ETag."""
        if self.size < 0:
            self._fetch(0, HEAD_BLOCK, data=False, first=True)

    def _fetch(self, start: int, end: int, data: bool, first: bool = False) -> bytes:
        """Bytes [start, end) (clipped to the file), fetched and cached."""
        with self._lock:
            self.requests += 1
            if not data:
                self.metadata_bytes += end - start
            over = self.metadata_bytes > METADATA_BUDGET or self.requests > MAX_REQUESTS
        if over:
            raise RemoteError(
                Msg(
                    "{display}: reading this file's structure needs more than {metadata_budget} or {max_requests} requests (e.g. an old PyTorch format with its records spread over the file); download it to read it",
                    display=self.display,
                    metadata_budget=Size(METADATA_BUDGET),
                    max_requests=MAX_REQUESTS,
                ),
                "remote-budget",
            )
        headers = {"Range": f"bytes={start}-{end - 1}"}
        url = self.final_url or self.url
        try:
            ans = _request(self.display, url, headers, end - start, ranged=True)
        except RemoteError as e:
            if self.final_url is None or e.code not in ("http-401", "http-403", "http-404", "http-410"):
                raise
            self.final_url = None  # a signed storage URL may have expired: resolve again once
            ans = _request(self.display, self.url, headers, end - start, ranged=True)
        self.final_url = ans.final_url
        body = ans.body
        if ans.status == 416:
            m = _UNSATISFIED_RANGE.match(ans.headers.get("content-range", ""))
            if not m:
                raise RemoteError(
                    Msg(
                        "{display}: the server refused the byte range {start}-{last}",
                        display=self.display,
                        start=start,
                        last=end - 1,
                    ),
                    "http-416",
                )
            self._check_same(int(m.group(1)), ans.headers.get("etag"), first)
            body = b""
        elif ans.status == 206:
            m = _CONTENT_RANGE.match(ans.headers.get("content-range", ""))
            if not m:
                raise RemoteError(
                    Msg(
                        "{display}: the server answered a range request without a valid Content-Range",
                        display=self.display,
                    )
                )
            got_start, got_end, total = int(m.group(1)), int(m.group(2)) + 1, m.group(3)
            if total == "*":
                raise RemoteError(Msg("{display}: the server does not say how large the file is", display=self.display))
            self._check_same(int(total), ans.headers.get("etag"), first)
            if got_start != start or got_end > end or (got_end < end and got_end != self.size):
                raise RemoteError(
                    Msg(
                        "{display}: asked for bytes {start}-{last}, the server sent {got_start}-{got_last}",
                        display=self.display,
                        start=start,
                        last=end - 1,
                        got_start=got_start,
                        got_last=got_end - 1,
                    )
                )
            if len(body) != got_end - got_start:
                raise RemoteError(
                    Msg(
                        "{display}: truncated answer ({got} of {length})",
                        display=self.display,
                        got=len(body),
                        length=Bytes(got_end - got_start),
                    ),
                    "truncated",
                )
        elif ans.status == 200:
            # The whole file, small enough to take (bigger ones were stopped in _request).
            length = ans.headers.get("content-length")
            if length is not None and length.isdigit() and int(length) != len(body):
                raise RemoteError(
                    Msg(
                        "{display}: truncated answer ({got} of {length})",
                        display=self.display,
                        got=len(body),
                        length=Bytes(int(length)),
                    ),
                    "truncated",
                )
            self._check_same(len(body), ans.headers.get("etag"), first)
            with self._lock:
                self._spans = [(0, body)]
            _count(len(body), data)
            return body[start:end]
        else:
            raise RemoteError(
                Msg("{display}: unexpected HTTP {status} to a range request", display=self.display, status=ans.status)
            )
        _count(len(body), data)
        if len(body) <= CACHE_LIMIT // 4:
            self._remember(start, body)
        return body

    def _check_same(self, size: int, etag: str | None, first: bool) -> None:
        if etag is not None:
            etag = etag.removeprefix("W/")
        with self._lock:
            if self.size < 0 or first:
                self.size, self.etag = size, etag
                return
            if size != self.size:
                raise RemoteError(
                    Msg(
                        "{display}: the file changed on the server while it was read (size {before} then {after})",
                        display=self.display,
                        before=self.size,
                        after=Bytes(size),
                    ),
                    "remote-changed",
                )
            if etag is not None and self.etag is not None and etag != self.etag:
                raise RemoteError(
                    Msg(
                        "{display}: the file changed on the server while it was read (ETag changed)",
                        display=self.display,
                    ),
                    "remote-changed",
                )

    def _remember(self, start: int, body: bytes) -> None:
        with self._lock:
            self._spans.append((start, body))
            total = sum(len(b) for _, b in self._spans)
            while len(self._spans) > 1 and total > CACHE_LIMIT:
                total -= len(self._spans.pop(1)[1])  # keep the head block, drop the oldest other span

    def _cached(self, start: int, end: int) -> bytes | None:
        with self._lock:
            for s, b in self._spans:
                if s <= start and end <= s + len(b):
                    return b[start - s : end - s]
        return None

    # ---- reading

    def read_at(self, offset: int, n: int, data: bool = False) -> bytes:
        """Up to ``n`` bytes at ``offset`` (fewer only at the end of the file)."""
        self.start()
        end = min(offset + n, self.size)
        if end <= offset:
            return b""
        hit = self._cached(offset, end)
        if hit is not None:
            return hit
        if data and not self.read_data:
            raise RemoteError(
                Msg(
                    "{display}: tensor values of a remote file are not fetched without --read-data (this needs {size} at least)",
                    display=self.display,
                    size=Size(end - offset),
                ),
                "remote-data",
            )
        head = self._cached_prefix(offset)
        if head:  # the start is cached (a header read beyond the head block): fetch only the rest
            return head + self.read_at(offset + len(head), end - offset - len(head), data)
        if end - offset < SMALL_READ:
            body = self._fetch(offset, min(self.size, offset + SMALL_READ), data)
            return body[: end - offset]
        return self._fetch(offset, end, data)

    def _cached_prefix(self, offset: int) -> bytes:
        with self._lock:
            for s, b in self._spans:
                if s <= offset < s + len(b):
                    return b[offset - s :]
        return b""

    def prefetch(self, ranges: list[tuple[int, int]]) -> None:
        """Fetch many small (offset, length) ranges ahead, merged when close, in parallel: what a zip
        reader needs before it visits every local header."""
        self.start()
        spans = sorted((o, min(o + n, self.size)) for o, n in ranges if o < self.size)
        merged: list[list[int]] = []
        for s, e in spans:
            if self._cached(s, e) is not None:
                continue
            if merged and s - merged[-1][1] <= PREFETCH_GAP:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        if not merged:
            return
        with ThreadPoolExecutor(min(PREFETCH_THREADS, len(merged))) as pool:
            for _ in pool.map(lambda se: self._fetch(se[0], se[1], data=False), merged):
                pass


class RemoteReader(io.RawIOBase):
    """A seekable binary file over a remote file (what ``open(path, "rb")`` gives for a local one)."""

    def __init__(self, remote: _RemoteFile) -> None:
        super().__init__()
        self.remote = remote
        self.name = remote.display
        remote.start()
        self._pos = 0

    @property
    def size(self) -> int:
        return self.remote.size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self.remote.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = max(0, self.remote.size - self._pos)
        data = self.remote.read_at(self._pos, size)
        self._pos += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        """Tensor values: fetched only when the path was opened with ``read_data``."""
        view = memoryview(buffer).cast("B")
        data = self.remote.read_at(self._pos, len(view), data=True)
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def read_at(self, offset: int, n: int) -> bytes:
        return self.remote.read_at(offset, n)

    def prefetch(self, ranges: list[tuple[int, int]]) -> None:
        self.remote.prefetch(ranges)


# ------------------------------------------------------------------------------------------- paths


@dataclass(frozen=True)
class HfLocation:
    repo: str
    revision: str
    path: str

    @property
    def endpoint(self) -> str:
        return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")

    def resolve_url(self, path: str | None = None) -> str:
        p = self.path if path is None else path
        return f"{self.endpoint}/{self.repo}/resolve/{quote(self.revision, safe='')}/{quote(p)}"


def parse_hf(url: str) -> HfLocation:
    """``hf://OWNER/REPO[@REV][/PATH]``. Raises RemoteError with the expected form."""
    rest = url.removeprefix("hf://").strip("/")
    parts = rest.split("/")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise RemoteError(Msg("{url}: expected hf://OWNER/REPO[@REVISION][/PATH]", url=url))
    repo_name, _, rev = parts[1].partition("@")
    if not repo_name or (_ and not rev):
        raise RemoteError(Msg("{url}: expected hf://OWNER/REPO[@REVISION][/PATH]", url=url))
    return HfLocation(f"{parts[0]}/{repo_name}", rev or "main", "/".join(parts[2:]))


@dataclass
class _Listing:
    """A Hugging Face repository's files (path -> size) and folders, from its tree API."""

    files: dict[str, int] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)


_listings: dict[tuple[str, str, str], _Listing] = {}
_files: dict[tuple[str, bool], _RemoteFile] = {}
_cache_lock = threading.Lock()


def _listing(loc: HfLocation, display: str) -> _Listing:
    key = (loc.endpoint, loc.repo, loc.revision)
    with _cache_lock:
        cached = _listings.get(key)
    if cached is not None:
        return cached
    listing = _Listing(dirs={""})
    url: str | None = f"{loc.endpoint}/api/models/{loc.repo}/tree/{quote(loc.revision, safe='')}?recursive=true"
    pages = 0
    while url and pages < 100:
        pages += 1
        ans = _request(redact(display), url, {"Accept": "application/json"}, 64 * 1024 * 1024, ranged=False)
        try:
            items = json.loads(ans.body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RemoteError(Msg("{display}: the repository listing is not JSON", display=display)) from None
        if not isinstance(items, list):
            raise RemoteError(Msg("{display}: the repository listing is not a list", display=display))
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("path"), str):
                continue
            if item.get("type") == "directory":
                listing.dirs.add(item["path"])
            elif isinstance(item.get("size"), int):
                listing.files[item["path"]] = item["size"]
        m = re.search(r'<([^>]+)>;\s*rel="next"', ans.headers.get("link", ""))
        url = urljoin(url, m.group(1)) if m else None
    for f in listing.files:
        parts = f.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            listing.dirs.add("/".join(parts[:i]))
    with _cache_lock:
        _listings[key] = listing
    return listing


@dataclass(frozen=True)
class RemoteStat:
    st_size: int


class RemotePath:
    """A remote file or (Hugging Face) folder with the ``pathlib`` subset the readers use.

    ``explicit``: named by the user (a plain URL is then taken to be a file; paths derived from it,
    such as a sidecar ``.yaml``, are not known to exist). ``read_data``: tensor values may be fetched.
    """

    def __init__(self, url: str, read_data: bool = False, explicit: bool = True) -> None:
        if not url.startswith(REMOTE_PREFIXES):
            raise RemoteError(Msg("{url}: not a remote path (http://, https:// or hf://)", url=url))
        self.url = url.rstrip("/") if url.startswith("hf://") else url
        self.read_data = read_data
        self.explicit = explicit
        self.hf = parse_hf(self.url) if self.url.startswith("hf://") else None
        split = urlsplit(self.url)
        self._posix = PurePosixPath(self.hf.path if self.hf else split.path or "/")

    # ---- pure path operations

    def __str__(self) -> str:
        return redact(self.url)

    def __repr__(self) -> str:
        return f"RemotePath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemotePath) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    def __lt__(self, other: RemotePath) -> bool:
        return self.url < other.url

    @property
    def name(self) -> str:
        return self._posix.name if self._posix.name else (self.hf.repo.split("/")[1] if self.hf else "")

    @property
    def suffix(self) -> str:
        return self._posix.suffix

    @property
    def stem(self) -> str:
        return self._posix.stem

    def _with_path(self, path: str) -> RemotePath:
        if self.hf:
            rev = "" if self.hf.revision == "main" and "@" not in self.url else f"@{self.hf.revision}"
            base = f"hf://{self.hf.repo}{rev}"
            return RemotePath(f"{base}/{path}" if path else base, self.read_data, explicit=False)
        s = urlsplit(self.url)  # the path is still percent-encoded: joined as it is
        return RemotePath(f"{s.scheme}://{s.netloc}/{path.lstrip('/')}", self.read_data, explicit=False)

    @property
    def parent(self) -> RemotePath:
        parent = str(self._posix.parent)
        return self._with_path("" if parent == "." else parent)

    def __truediv__(self, other: str) -> RemotePath:
        return self._with_path(str(self._posix / other))

    def with_suffix(self, suffix: str) -> RemotePath:
        return self._with_path(str(self._posix.with_suffix(suffix)))

    def relative_to(self, other: RemotePath) -> PurePosixPath:
        return self._posix.relative_to(other._posix)

    def as_posix(self) -> str:
        return self.url

    # ---- what exists (Hugging Face repositories are listed; plain URLs are files when named)

    def _listed(self) -> _Listing | None:
        if self.hf is None:
            return None
        return _listing(self.hf, self.url)

    def is_dir(self) -> bool:
        if self.hf is None or "." in self._posix.name:
            return False  # a file name is not looked up: the listing costs a request
        listing = self._listed()
        return listing is not None and self.hf.path in listing.dirs

    def is_file(self) -> bool:
        if self.hf is None:
            return self.explicit
        if self.explicit and "." in self._posix.name:
            return True
        listing = self._listed()
        return listing is not None and self.hf.path in listing.files

    def exists(self) -> bool:
        return self.is_file() or self.is_dir()

    def iterdir(self) -> Iterator[RemotePath]:
        listing = self._listed()
        if listing is None or self.hf is None:
            return iter(())
        prefix = self.hf.path + "/" if self.hf.path else ""
        names = {
            p[len(prefix) :].split("/", 1)[0]
            for p in (*listing.files, *listing.dirs)
            if p.startswith(prefix) and p != prefix
        }
        return iter(self / n for n in sorted(names) if n)

    def rglob(self, pattern: str) -> Iterator[RemotePath]:
        if pattern != "*":
            raise ValueError("RemotePath.rglob supports '*' only")
        listing = self._listed()
        if listing is None or self.hf is None:
            return iter(())
        prefix = self.hf.path + "/" if self.hf.path else ""
        return iter(self._with_path(p) for p in sorted(listing.files) if p.startswith(prefix))

    def stat(self) -> RemoteStat:
        if self.hf is not None:
            listing = _listings.get((self.hf.endpoint, self.hf.repo, self.hf.revision))
            if listing is not None and self.hf.path in listing.files:
                return RemoteStat(listing.files[self.hf.path])
        f = self._file()
        f.start()
        return RemoteStat(f.size)

    # ---- reading

    @property
    def http_url(self) -> str:
        return self.hf.resolve_url() if self.hf else self.url

    def _file(self) -> _RemoteFile:
        """The shared state of this URL: opening it again (sniffing, then reading) reuses what was
        fetched. The last few files are kept; an open reader keeps its own."""
        key = (self.url, self.read_data)
        with _cache_lock:
            f = _files.pop(key, None)
            if f is None:
                f = _RemoteFile(str(self), self.http_url, self.read_data)
            _files[key] = f
            while len(_files) > KEEP_FILES:
                del _files[next(iter(_files))]
        return f

    def open(self, mode: str = "rb") -> RemoteReader:
        if mode != "rb":
            raise ValueError("remote files open read-only, in binary mode")
        return RemoteReader(self._file())

    def read_bytes(self) -> bytes:
        with self.open() as f:
            return f.read()

    def read_text(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return self.read_bytes().decode(encoding, errors)


def forget() -> None:
    """Drop cached listings and file states (a new batch item must see the server's current state)."""
    with _cache_lock:
        _listings.clear()
        _files.clear()


def as_path(name: Any, read_data: bool = False) -> Any:
    """A RemotePath for a URL (kept as it is when it already is one), else a local ``Path``."""
    if isinstance(name, RemotePath):
        return name
    return RemotePath(name, read_data) if is_remote(name) else Path(name)
