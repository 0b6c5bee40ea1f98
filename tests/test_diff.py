"""sdmodel.diff: per-tensor and per-part differences, streaming."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from safetensors.numpy import save_file

from sdmodel.cli import main_group
from sdmodel.conversion import convert
from sdmodel.diffing import diff
from tests import families
from tests.builders import arrays, shrink, with_ema


def write(path: Path, arrs: dict[str, np.ndarray]) -> Path:
    save_file(arrs, str(path))
    return path


def test_fp16_is_close_to_fp32_and_nothing_else_changed(tmp_path: Path) -> None:
    arrs = arrays(shrink(families.sd1(), keep=lambda k: False))
    a = write(tmp_path / "a.safetensors", arrs)
    b = convert(a, dtype="fp16").output
    r = diff(a, b)
    assert not r.missing and not r.extra
    unet = next(p for p in r.parts if p.part == "unet")
    assert unet.changed_dtype == unet.tensors and 0 < unet.max_rel < 1e-3
    sched = next(p for p in r.parts if p.part == "schedule")
    assert sched.identical == sched.tensors and sched.max_abs == 0
    assert not r.same
    assert diff(a, a).same


def test_missing_extra_shape_and_ema_distance(tmp_path: Path) -> None:
    arrs = arrays(shrink(with_ema(families.sd1()), keep=lambda k: False))
    a = write(tmp_path / "a.safetensors", arrs)
    b_arrs = {k: v for k, v in arrs.items() if not k.startswith("model_ema.")}
    b_arrs["extra.key"] = np.zeros(2, np.float32)
    k = "model.diffusion_model.out.2.bias"
    b_arrs[k] = np.zeros(3, np.float32)
    w = "model.diffusion_model.input_blocks.0.0.weight"
    b_arrs[w] = b_arrs[w] + 0.5
    b = write(tmp_path / "b.safetensors", b_arrs)
    r = diff(a, b)
    assert len(r.missing) == sum(1 for n in arrs if n.startswith("model_ema.")) and r.extra == ["extra.key"]
    by = {t.name: t for t in r.tensors}
    assert by[k].status == "shape" and by[k].max_abs is None
    assert abs(by[w].max_abs - 0.5) < 1e-6 and by[w].status == "differs"
    ema = next(p for p in r.parts if p.part == "ema")
    assert ema.missing == len(r.missing)


def test_nan_and_int_handling(tmp_path: Path) -> None:
    a = write(tmp_path / "a.safetensors", {"x": np.array([1.0, np.nan, 2.0], np.float32), "i": np.arange(4)})
    b = write(tmp_path / "b.safetensors", {"x": np.array([1.0, np.nan, 2.5], np.float32), "i": np.arange(4) * 2})
    r = diff(a, b)
    by = {t.name: t for t in r.tensors}
    assert by["x"].max_abs == 0.5 and by["i"].max_abs == 3
    assert diff(a, a).same


def test_cli_diff_json_and_exit_status(tmp_path: Path) -> None:
    arrs = arrays(shrink(families.sd1(), keep=lambda k: False))
    a = write(tmp_path / "a.safetensors", arrs)
    b = convert(a, dtype="bf16").output
    runner = CliRunner()
    res = runner.invoke(main_group, ["diff", str(a), str(b), "--json"])
    assert res.exit_code == 1
    data = json.loads(res.output)
    assert not data["same"] and {p["part"] for p in data["parts"]} >= {"unet", "vae", "text_encoder"}
    res = runner.invoke(main_group, ["diff", str(a), str(a)], terminal_width=200)
    assert res.exit_code == 0 and "same values" in res.output
    res = runner.invoke(main_group, ["diff", str(a), str(b)], terminal_width=200)
    assert "max rel" in res.output and "differs" in res.output


def test_negative_zero_is_equal_values_not_identical(tmp_path):
    import numpy as np
    from safetensors.numpy import save_file

    from sdmodel.diffing import diff

    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_file({"t": np.array([0.0, 1.0], np.float32)}, str(a))
    save_file({"t": np.array([-0.0, 1.0], np.float32)}, str(b))
    t = diff(a, b).tensors[0]
    assert t.status == "equal values" and not t.identical and t.max_abs == 0
