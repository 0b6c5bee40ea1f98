"""The streaming engine and the checkpoint writer: exact output, faults, safety of the user's files."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from sdmodel.atomic import temp_path
from sdmodel.engine import execute
from sdmodel.errors import ConversionError
from sdmodel.formats import ckpt_writer
from sdmodel.formats.base import DictSource
from sdmodel.plan import apply_dtypes, initial_plan

ROOT = Path(__file__).resolve().parent.parent


def mixed() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {
        "w": (rng.standard_normal((64, 48)) * 0.02).astype(np.float32),
        "conv": (rng.standard_normal((8, 4, 3, 3)) * 0.02).astype(np.float32),
        "big": (rng.standard_normal((5000, 1000)) * 300).astype(np.float32),  # cast in parallel chunks
        "h": rng.standard_normal(7).astype(np.float16),
        "b": rng.standard_normal(5).astype(ml_dtypes.bfloat16),
        "ids": np.arange(77, dtype=np.int64).reshape(1, 77),
        "n": np.array(7, dtype=np.int32),
        "s": np.array(0.5, dtype=np.float32),
        "flag": np.array([True, False]),
        "empty": np.zeros((0, 3), np.float32),
        "u8": np.arange(10, dtype=np.uint8),
    }


def plan_for(arrs: dict[str, np.ndarray], dtype: str | None = None, path: str = "src.safetensors"):
    plan = initial_plan(DictSource(arrs, path))
    apply_dtypes(plan, dtype)
    return plan


def test_safetensors_output_is_byte_identical_to_the_reference_writer(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    arrs = mixed()
    save_file(arrs, str(tmp_path / "ref.safetensors"))
    execute(plan_for(arrs), tmp_path / "ours.safetensors")
    assert (tmp_path / "ours.safetensors").read_bytes() == (tmp_path / "ref.safetensors").read_bytes()


def test_hash_placeholder_patched_with_data_sha256(tmp_path: Path) -> None:
    from safetensors import safe_open

    out = tmp_path / "o.safetensors"
    r = execute(plan_for(mixed(), "F16"), out, metadata={"modelspec.hash_sha256": "x", "k": "v"}, verify=True)
    raw = out.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    assert r.sha256_data == hashlib.sha256(raw[8 + n :]).hexdigest()
    with safe_open(str(out), "np") as f:
        assert f.metadata() == {"modelspec.hash_sha256": "0x" + r.sha256_data, "k": "v"}
    assert r.verified and r.bytes == len(raw)


@pytest.mark.parametrize("dtype", [None, "F16", "BF16", "F8_E4M3", "F8_E5M2"])
def test_ckpt_loads_with_torch_weights_only_bit_exact(tmp_path: Path, dtype: str | None) -> None:
    torch = pytest.importorskip("torch")
    arrs = mixed()
    plan = plan_for(arrs, dtype)
    out = tmp_path / "o.ckpt"
    r = execute(plan, out, fmt="ckpt", verify=True)
    sd = torch.load(str(out), weights_only=True)["state_dict"]
    assert list(sd) == [s.out for s in plan.steps]
    for s in plan.steps:
        t = sd[s.out]
        assert tuple(t.shape) == s.shape and t.is_contiguous()
        want = arrs[s.name]
        tw = torch.from_numpy(want.astype(np.float32)) if want.dtype == ml_dtypes.bfloat16 else torch.from_numpy(want)
        if s.out_dtype == "F16":
            tw = tw.half()
        elif s.out_dtype == "BF16":
            tw = tw.bfloat16()
        elif s.out_dtype == "F8_E4M3":
            tw = tw.float().clamp(-448, 448).to(torch.float8_e4m3fn)
        elif s.out_dtype == "F8_E5M2":
            tw = tw.float().clamp(-57344, 57344).to(torch.float8_e5m2)
        assert t.dtype == tw.dtype, s.out
        assert torch.equal(t.reshape(-1).view(torch.uint8), tw.reshape(-1).view(torch.uint8)), s.out
    if dtype == "F8_E4M3":
        assert r.clamped["big"] == int(np.count_nonzero(np.abs(arrs["big"]) > 448))


def test_bf16_bits_are_ml_dtypes_cast() -> None:
    """The one float32 -> bf16 rule (dtypes.round_bf16) gives ml_dtypes' bits: every upper half
    with the lower halves around a tie, NaNs of every payload and sign, infinities, overflow to
    infinity, subnormals; and every fp16 value."""
    from sdmodel.dtypes import bf16_bits

    upper = np.arange(1 << 16, dtype=np.uint32) << 16
    lower = np.array([0, 1, 0x7FFF, 0x8000, 0x8001, 0xFFFF], dtype=np.uint32)
    rng = np.random.default_rng(0)
    u = np.concatenate([(upper[:, None] | lower).reshape(-1), rng.integers(0, 1 << 32, 100_000, dtype=np.uint32)])
    for x in (u.view(np.float32), np.arange(1 << 16, dtype=np.uint16).view(np.float16)):
        with np.errstate(invalid="ignore"):
            want = x.astype(ml_dtypes.bfloat16).view(np.uint16)
        assert np.array_equal(bf16_bits(x), want)


def test_bf16_cast_needs_no_ml_dtypes(tmp_path: Path) -> None:
    """fp32 and fp16 tensors cast to bf16 by the engine (and bf16 dequantized from Q8_0) go as
    uint16 bits: importing ml_dtypes would take most of a second, holding the GIL."""
    from tests.quant_files import write_gguf

    src = tmp_path / "q.gguf"
    rng = np.random.default_rng(0)
    arrays = {"w.weight": rng.standard_normal((64, 64)).astype(np.float32), "w.bias": np.ones(64, np.float32)}
    write_gguf(src, arrays, {"w.weight": "Q8_0"})
    code = f"""
import sys
from sdmodel.conversion import convert
convert({str(src)!r}, {str(tmp_path / "o.safetensors")!r}, dtype="bf16")
assert "ml_dtypes" not in sys.modules
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_ckpt_zip64_records_load_with_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(ckpt_writer, "ZIP64_LIMIT", 0)  # every record gets the >4 GiB encoding
    arrs = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.ones(100, np.float16)}
    execute(plan_for(arrs), tmp_path / "z.ckpt", fmt="ckpt", verify=True)
    sd = torch.load(str(tmp_path / "z.ckpt"), weights_only=True)["state_dict"]
    assert torch.equal(sd["a"], torch.from_numpy(arrs["a"])) and torch.equal(sd["b"], torch.ones(100).half())


def test_ckpt_storages_are_64_byte_aligned(tmp_path: Path) -> None:
    import zipfile

    execute(plan_for(mixed()), tmp_path / "a.ckpt", fmt="ckpt")
    with zipfile.ZipFile(tmp_path / "a.ckpt") as z, open(tmp_path / "a.ckpt", "rb") as f:
        for info in z.infolist():
            f.seek(info.header_offset + 26)
            n, e = int.from_bytes(f.read(2), "little"), int.from_bytes(f.read(2), "little")
            assert (info.header_offset + 30 + n + e) % 64 == 0, info.filename
        assert z.read("archive/version") == b"3\n" and z.read("archive/byteorder") == b"little"


def test_refuses_existing_output_and_the_input(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    src = tmp_path / "src.safetensors"
    save_file({"a": np.ones(3, np.float32)}, str(src))
    from sdmodel.formats import open_model

    with open_model(src) as s:
        plan = initial_plan(s)
        with pytest.raises(ConversionError, match="onto the input"):
            execute(plan, src, overwrite=True)
        os.link(src, tmp_path / "hard.safetensors")
        with pytest.raises(ConversionError, match="onto the input"):
            execute(plan, tmp_path / "hard.safetensors", overwrite=True)
        (tmp_path / "out.safetensors").write_bytes(b"keep me")
        with pytest.raises(ConversionError, match="already exists"):
            execute(plan, tmp_path / "out.safetensors")
        assert (tmp_path / "out.safetensors").read_bytes() == b"keep me"
        execute(plan, tmp_path / "out.safetensors", overwrite=True)
        assert (tmp_path / "out.safetensors").read_bytes() == src.read_bytes()


def test_read_error_leaves_nothing(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    from sdmodel.errors import ModelReadError
    from sdmodel.formats import open_model

    src = tmp_path / "src.safetensors"
    save_file({"a": np.ones(1000, np.float32), "b": np.ones(1000, np.float32)}, str(src))
    with open_model(src) as s:
        plan = initial_plan(s)
        with open(src, "r+b") as f:  # truncated after the header was read
            f.truncate(src.stat().st_size - 100)
        with pytest.raises(ModelReadError, match="truncated"):
            execute(plan, tmp_path / "out.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.safetensors"]


CHILD = textwrap.dedent(
    """
    import sys, time, numpy as np
    from pathlib import Path
    sys.path.insert(0, {root!r})
    from sdmodel.cli.common import sigterm_as_interrupt
    from sdmodel.engine import execute
    from sdmodel.formats.base import DictSource
    from sdmodel.plan import initial_plan, apply_dtypes
    mode, out, size = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    arrs = {{f"t{{i}}": np.full(size, i, np.float32) for i in range(8)}}
    plan = initial_plan(DictSource(arrs, "src"))
    apply_dtypes(plan, "F16")
    def progress(done, total):
        if mode == "slow":
            (out.parent.parent / "started").touch()
            time.sleep(0.5)
    if mode == "fsize":
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
    try:
        with sigterm_as_interrupt():  # what the CLI does: the library installs no signal handler
            execute(plan, out, progress=progress)
    except Exception as e:
        print(type(e).__name__, e)
        sys.exit(2)
    """
)


def run_child(tmp_path: Path, mode: str, out: Path, size: int = 100_000) -> subprocess.Popen:
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(root=str(ROOT / "src")))
    return subprocess.Popen(
        [sys.executable, str(script), mode, str(out), str(size)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_started(tmp_path: Path, proc: subprocess.Popen) -> None:
    for _ in range(200):
        if (tmp_path / "started").exists():
            return
        time.sleep(0.05)
    proc.kill()
    pytest.fail("child did not start writing: " + proc.communicate()[1])


def test_killed_mid_write_leaves_no_final_file(tmp_path: Path) -> None:
    out = tmp_path / "out" / "model.safetensors"
    out.parent.mkdir()
    proc = run_child(tmp_path, "slow", out)
    wait_started(tmp_path, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir()] == [".model.safetensors.sdmodel-tmp"]  # named clearly
    # the next run writing the same output replaces the leftover
    execute(plan_for({"a": np.ones(3, np.float32)}), out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.safetensors"]


def test_sigterm_mid_write_removes_the_temp_file(tmp_path: Path) -> None:
    out = tmp_path / "out" / "model.safetensors"
    out.parent.mkdir()
    proc = run_child(tmp_path, "slow", out)
    wait_started(tmp_path, proc)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)
    assert proc.returncode != 0
    assert list(out.parent.iterdir()) == []


def test_file_size_limit_is_a_clean_error(tmp_path: Path) -> None:
    out = tmp_path / "model.safetensors"
    proc = run_child(tmp_path, "fsize", out, size=200_000)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2, stderr
    assert "ConversionError" in stdout and "nothing was written" in stdout
    assert not out.exists() and not temp_path(out).exists()


def _mount_tmpfs(d: Path) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    cmd = ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(d)]
    return subprocess.run(cmd, capture_output=True).returncode == 0


def test_disk_full_is_a_clean_error(tmp_path: Path) -> None:
    d = tmp_path / "small"
    d.mkdir()
    if not _mount_tmpfs(d):
        pytest.skip("cannot mount a tmpfs here (the size-limit test covers the same path)")
    try:
        arrs = {f"t{i}": np.full(200_000, i, np.float32) for i in range(4)}  # 3.2 MB > 1 MB
        with pytest.raises(ConversionError, match="disk full"):
            execute(plan_for(arrs), d / "model.safetensors")
        assert list(d.iterdir()) == []
    finally:
        subprocess.run(["umount", str(d)], check=False)


def test_execute_leaves_the_signal_handlers_alone(tmp_path: Path) -> None:
    """A library function must not replace the process's handlers: the CLI owns them."""
    seen = []

    def mine(signum, frame) -> None:  # pragma: no cover - never called
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        plan = plan_for({"a": np.ones(3, np.float32)})
        execute(plan, tmp_path / "a.safetensors", progress=lambda d, t: seen.append(signal.getsignal(signal.SIGTERM)))
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert seen and all(h is mine for h in seen)


def test_a_new_sink_plugs_in_without_touching_the_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A format is one entry in formats.writers.SINKS; encode chooses the bytes of each tensor."""
    from sdmodel.formats import open_model, writers
    from sdmodel.formats.safetensors_writer import SafetensorsSink

    class Negated(SafetensorsSink):
        format = "negated"

        def encode(self, index: int, array: np.ndarray, into: np.ndarray | None = None) -> memoryview:
            return memoryview((-array).reshape(-1).view(np.uint8))

        def verify(self, path: Path, expected) -> None:
            super().verify(path, lambda i: -expected(i))

    monkeypatch.setitem(writers.SINKS, "negated", (".safetensors", Negated))
    out = tmp_path / "neg.safetensors"
    result = execute(plan_for({"a": np.arange(4, dtype=np.float32)}), out, fmt="negated", verify=True)
    assert result.format == "negated" and result.verified
    with open_model(out) as src:
        assert src.read("a").tolist() == [0.0, -1.0, -2.0, -3.0]
