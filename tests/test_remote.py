"""The HTTP range reader against a local server: ranges, redirects, tokens, and every way a server
can fail (ignored ranges, timeouts, 401/403/404, truncated answers, a file that changes)."""

from __future__ import annotations

import os
import time

import pytest

from sdmodel import remote
from sdmodel.errors import RemoteError
from sdmodel.remote import RemotePath, measure, parse_hf
from tests.remote_server import ModelServer

BLOB = bytes(range(256)) * 4096  # 1 MiB, every offset recognisable


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch):
    for var in ("HF_TOKEN", "CIVITAI_TOKEN", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    with ModelServer() as s:
        monkeypatch.setenv("HF_ENDPOINT", s.endpoint)
        s.files["blob.bin"] = BLOB
        s.files["small.bin"] = b"tiny file"
        s.files["empty.bin"] = b""
        yield s
    remote.forget()


def test_ranges_fetch_only_what_is_read(server):
    with measure() as m, RemotePath(server.url("f", "blob.bin")).open() as f:
        assert f.size == len(BLOB)
        assert f.read(8) == BLOB[:8]
        f.seek(700_000)
        assert f.read(100) == BLOB[700_000:700_100]
        f.seek(-10, 2)
        assert f.read() == BLOB[-10:]
    assert m.bytes_read < 200_000 and m.requests == 3
    deadline = time.monotonic() + 2  # the server counts a body once it has sent it
    while server.sent != m.bytes_read and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.sent == m.bytes_read
    assert "of 1.05 MB in 3 requests" in str(m.summary(len(BLOB)))


def test_cached_reads_and_small_files(server):
    with measure() as m, RemotePath(server.url("f", "small.bin")).open() as f:
        assert f.read() == b"tiny file"
        f.seek(5)
        assert f.read(100) == b"file"
    assert m.requests == 1
    with RemotePath(server.url("f", "empty.bin")).open() as f:
        assert f.size == 0 and f.read(10) == b""


def test_redirect_followed_and_token_stays_on_its_host(server, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", server.token)
    # HF_ENDPOINT's host (127.0.0.1) gets the token; the redirect target (localhost) must not.
    with RemotePath(server.url("away", "blob.bin")).open() as f:
        assert f.read(4) == BLOB[:4]
    assert server.log[0][2] == f"Bearer {server.token}"
    assert server.log[1][0] == "/f/blob.bin" and server.log[1][2] is None
    # The final URL is reused: later ranges skip the redirect.
    with RemotePath(server.url("away", "blob.bin")).open() as f:
        f.seek(500_000)
        f.read(4)
    assert [p for p, _, _ in server.log[2:]] == ["/f/blob.bin"]


def test_relative_307_redirect(server):
    with RemotePath(server.url("redirect", "small.bin")).open() as f:
        assert f.read() == b"tiny file"


def test_token_never_in_errors(server, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", "wrong-token")
    with pytest.raises(RemoteError, match=r"401 Unauthorized.*token in HF_TOKEN was refused") as e:
        RemotePath(server.url("auth", "blob.bin")).open()
    assert "wrong-token" not in str(e.value)
    monkeypatch.setenv("HF_TOKEN", server.token)
    with RemotePath(server.url("auth", "small.bin")).open() as f:
        assert f.read() == b"tiny file"


def test_401_without_token_names_the_variable(server):
    with pytest.raises(RemoteError, match="set HF_TOKEN"):
        RemotePath(server.url("auth", "blob.bin")).open()


@pytest.mark.parametrize(
    ("route", "name", "message"),
    [
        ("f", "missing.bin", "404 Not Found"),
        ("forbidden", "blob.bin", "403 Forbidden"),
        ("short", "blob.bin", "truncated"),
    ],
)
def test_failing_answers_are_one_line_errors(server, route, name, message):
    with pytest.raises(RemoteError, match=message) as e:
        RemotePath(server.url(route, name)).open()
    assert "\n" not in str(e.value)


def test_server_ignoring_range_is_stopped(server):
    server.files["big.bin"] = BLOB * 32
    with pytest.raises(RemoteError, match=r"ignores Range requests.*\(33.55 MB\); stopped after 1.05 MB") as e:
        RemotePath(server.url("norange", "big.bin")).open()
    assert e.value.code == "range-ignored"
    assert server.sent < 8 * len(BLOB)  # 1 MiB read, plus what the sockets had buffered
    # A small file from such a server is simply taken whole.
    with RemotePath(server.url("norange", "small.bin")).open() as f:
        assert f.read() == b"tiny file"


def test_timeout(server, monkeypatch):
    monkeypatch.setenv("SDMODEL_TIMEOUT", "0.3")
    monkeypatch.setattr(remote, "_client", None)
    with pytest.raises(RemoteError, match=r"no answer within 0.3 s \(timeout\)"):
        RemotePath(server.url("slow", "small.bin")).open()
    monkeypatch.setattr(remote, "_client", None)


def test_dead_server(monkeypatch):
    remote.forget()
    with pytest.raises(RemoteError, match=r"cannot connect to 127\.0\.0\.1"):
        RemotePath("http://127.0.0.1:9/model.safetensors").open()


def test_file_changing_between_requests(server):
    with RemotePath(server.url("changing", "blob.bin")).open() as f:
        f.seek(900_000)
        with pytest.raises(RemoteError, match="changed on the server") as e:
            f.read(10)
    assert e.value.code == "remote-changed"


def test_tensor_values_need_read_data(server):
    buf = bytearray(100)
    with RemotePath(server.url("f", "blob.bin")).open() as f:
        f.seek(800_000)
        with pytest.raises(RemoteError, match="not fetched without --read-data"):
            f.readinto(buf)
    with measure() as m, RemotePath(server.url("f", "blob.bin"), read_data=True).open() as f:
        f.seek(800_000)
        assert f.readinto(buf) == 100 and bytes(buf) == BLOB[800_000:800_100]
    assert m.data_bytes > 0


def test_metadata_budget(server, monkeypatch):
    monkeypatch.setattr(remote, "METADATA_BUDGET", 200_000)
    with RemotePath(server.url("f", "blob.bin")).open() as f, pytest.raises(RemoteError, match="download it"):
        f.read(300_000)
    monkeypatch.setattr(remote, "METADATA_BUDGET", 10**9)
    monkeypatch.setattr(remote, "MAX_REQUESTS", 5)
    with RemotePath(server.url("f", "blob.bin")).open() as f, pytest.raises(RemoteError, match="5 requests"):
        for i in range(10):
            f.seek(100_000 * (i + 1))
            f.read(8)


def test_prefetch_merges_close_ranges(server):
    ranges = [(100_000 + 1000 * i, 100) for i in range(50)] + [(900_000, 100)]
    with measure() as m, RemotePath(server.url("f", "blob.bin")).open() as f:
        f.prefetch(ranges)
        before = m.requests
        for o, n in ranges:
            f.seek(o)
            assert f.read(n) == BLOB[o : o + n]
    assert before == 3 and m.requests == 3  # head block + two merged spans, no more afterwards


def test_hf_urls():
    loc = parse_hf("hf://stabilityai/sdxl-turbo@fp16/unet/model.safetensors")
    assert (loc.repo, loc.revision, loc.path) == ("stabilityai/sdxl-turbo", "fp16", "unet/model.safetensors")
    os.environ.pop("HF_ENDPOINT", None)
    assert RemotePath("hf://a/b/x/y.safetensors").http_url == "https://huggingface.co/a/b/resolve/main/x/y.safetensors"
    assert RemotePath("hf://a/b@refs/pr/1").hf is not None
    for bad in ("hf://onlyowner", "hf://a/b@"):
        with pytest.raises(RemoteError, match="expected hf://OWNER/REPO"):
            RemotePath(bad)


def test_hf_tree_listing(server):
    server.repos["acme/pipe"] = {"model_index.json": b"{}", "unet/config.json": b"{}", "unet/w.safetensors": b"x" * 10}
    root = RemotePath("hf://acme/pipe")
    assert root.is_dir() and not root.is_file()
    assert [p.name for p in root.iterdir()] == ["model_index.json", "unet"]
    unet = root / "unet"
    assert unet.is_dir() and (unet / "config.json").is_file() and not (unet / "nope.json").is_file()
    assert (unet / "w.safetensors").stat().st_size == 10
    assert (root / "model_index.json").read_text() == "{}"
    assert (unet / "w.safetensors").relative_to(root).as_posix() == "unet/w.safetensors"
    assert str((unet / "w.safetensors").parent) == "hf://acme/pipe/unet"
    # Derived paths of a plain URL are not assumed to exist (no sidecar probing of unknown servers).
    plain = RemotePath(server.url("f", "small.bin"))
    assert plain.is_file() and not plain.with_suffix(".yaml").is_file() and list(plain.parent.iterdir()) == []


def test_secrets_in_urls_are_not_shown(server):
    url = server.url("f", "missing.bin") + "?type=Model&token=abc123secret"
    assert str(RemotePath(url)) == server.url("f", "missing.bin") + "?type=Model&token=***"
    with pytest.raises(RemoteError) as e:
        RemotePath(url).open()
    assert "abc123secret" not in str(e.value) and "token=***" in str(e.value)


def test_tokens_only_for_their_exact_hosts(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "h")
    monkeypatch.setenv("CIVITAI_TOKEN", "c")
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    assert remote._token_for("https://huggingface.co/a/b/resolve/main/x") == ("HF_TOKEN", "h")
    assert remote._token_for("https://civitai.com/api/download/models/1") == ("CIVITAI_TOKEN", "c")
    for url in ("https://cdn-lfs.hf.co/x", "https://huggingface.co.evil.example/x", "https://example.com/x"):
        assert remote._token_for(url) is None
