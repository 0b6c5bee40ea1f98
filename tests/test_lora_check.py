"""``sdmodel lora check``: targets matched to real checkpoints (sparse files with the releases'
names and shapes) through every naming; verdicts and exit statuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from sdmodel.cli import main_group
from sdmodel.lora.check import check
from tests import lora_layouts as L
from tests.builders import Layout, layout, write_sparse_safetensors
from tests.test_lora_detect import flux_kohya_with_clip, sdxl_kohya


def sparse(tmp_path: Path, name: str, lay: Layout) -> Path:
    return write_sparse_safetensors(tmp_path / f"{name}.safetensors", lay)


@pytest.fixture
def sdxl_ckpt(tmp_path: Path) -> Path:
    return sparse(tmp_path, "sdxl", layout("sdxl-base"))


@pytest.fixture
def sd1_ckpt(tmp_path: Path) -> Path:
    return sparse(tmp_path, "sd15", layout("sd15"))


def test_sdxl_kohya_applies_fully(tmp_path: Path, sdxl_ckpt: Path) -> None:
    r = check(sparse(tmp_path, "lora", sdxl_kohya()), sdxl_ckpt)
    assert str(r.verdict) == "applies fully to this model"
    assert (r.found, r.missing, r.mismatched) == (r.targets, 0, 0)
    assert r.by_part["text encoder 2"]["found"] == 192  # q/k/v as rows of OpenCLIP's in_proj_weight
    assert r.exit_code == 0


def test_sdxl_diffusers_names_apply(tmp_path: Path, sdxl_ckpt: Path) -> None:
    lay = L.merged(L.peft(L.unet_attn(L.SDXL_UNET), "unet."), L.peft(L.clip_hf(1280, 32), "text_encoder_2."))
    r = check(sparse(tmp_path, "lora", lay), sdxl_ckpt)
    assert str(r.verdict) == "applies fully to this model", r.examples_missing


def test_sd1_lora_on_sdxl_says_so(tmp_path: Path, sdxl_ckpt: Path) -> None:
    lay = L.merged(L.kohya(L.unet_attn(L.SD1_UNET)), L.kohya(L.clip_hf(768, 12), "lora_te_"))
    r = check(sparse(tmp_path, "lora", lay), sdxl_ckpt)
    assert str(r.verdict) == "for SD 1.x, this is SDXL"
    assert r.exit_code == 1


def test_sd1_lora_applies_to_sd1(tmp_path: Path, sd1_ckpt: Path) -> None:
    lay = L.merged(L.kohya(L.unet_attn(L.SD1_UNET)), L.kohya(L.clip_hf(768, 12), "lora_te_"))
    r = check(sparse(tmp_path, "lora", lay), sd1_ckpt)
    assert str(r.verdict) == "applies fully to this model", r.examples_missing


def test_missing_component_named(tmp_path: Path) -> None:
    unet_only = {k: v for k, v in layout("sdxl-base").items() if k.startswith("model.diffusion_model.")}
    r = check(sparse(tmp_path, "lora", sdxl_kohya()), sparse(tmp_path, "unet", unet_only))
    assert (
        str(r.verdict)
        == "264 of 986 targets missing: text encoder 1 not in this model, text encoder 2 not in this model"
    )
    assert r.exit_code == 1


def test_shape_mismatch(tmp_path: Path, sdxl_ckpt: Path) -> None:
    stem = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k"
    lay = {stem + ".lora_down.weight": ((4, 2048), "F16"), stem + ".lora_up.weight": ((320, 4), "F16")}
    r = check(sparse(tmp_path, "lora", lay), sdxl_ckpt)
    assert r.mismatched == 1
    assert str(r.verdict) == "1 of 1 target has another shape than the model's weight"
    assert r.examples_mismatched[0]["model_shape"] == (640, 2048)


def test_flux_namings_apply_to_a_bfl_model(tmp_path: Path) -> None:
    model = sparse(tmp_path, "flux", L.flux_model())
    for name, lay in (
        ("kohya", L.kohya(L.flux_bfl())),
        ("comfy", L.comfy(L.flux_bfl())),
        ("diffusers", L.peft(L.linear_modules(L.diffusers_modules("FluxTransformer2DModel")))),
    ):
        r = check(sparse(tmp_path, name, lay), model)
        assert str(r.verdict) == "applies fully to this model", (name, r.examples_missing)
    r = check(sparse(tmp_path, "clip", flux_kohya_with_clip()), model)
    assert str(r.verdict) == "72 of 376 targets missing: text encoder 1 not in this model"


def test_cli_exit_codes_and_json(tmp_path: Path, sdxl_ckpt: Path) -> None:
    good = sparse(tmp_path, "good", sdxl_kohya())
    runner = CliRunner()
    res = runner.invoke(main_group, ["lora", "check", str(good), str(sdxl_ckpt), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["verdict"] == "applies fully to this model"
    bad = sparse(tmp_path, "bad", L.kohya(L.unet_attn(L.SD1_UNET)))
    res = runner.invoke(main_group, ["lora", "check", str(bad), str(sdxl_ckpt)])
    assert res.exit_code == 1
    assert "for SD 1.x, this is SDXL" in res.output
    folder = tmp_path / "loras"
    folder.mkdir()
    good.rename(folder / "good.safetensors")
    bad.rename(folder / "bad.safetensors")
    res = runner.invoke(main_group, ["lora", "check", str(folder), str(sdxl_ckpt), "--json"])
    assert res.exit_code == 1
    assert len(json.loads(res.output)) == 2


def test_cli_bad_input_exits_2(tmp_path: Path, sdxl_ckpt: Path) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a model at all")
    from sdmodel.cli import main

    with pytest.raises(SystemExit) as e:
        main(["lora", "check", str(junk), str(sdxl_ckpt)])
    assert e.value.code == 2


def test_info_reports_the_lora(tmp_path: Path) -> None:
    md = {"ss_tag_frequency": json.dumps({"5_sks": {"sks dog": 3}}), "ss_steps": "800"}
    path = write_sparse_safetensors(tmp_path / "l.safetensors", sdxl_kohya(), md)
    runner = CliRunner()
    res = runner.invoke(main_group, ["info", str(path), "--json"])
    assert res.exit_code == 0, res.output
    lora = json.loads(res.output)["lora"]
    assert (lora["family"], lora["format"], lora["trigger_words"]) == ("sdxl", "kohya", ["sks dog"])
    res = runner.invoke(main_group, ["info", str(path)])
    assert "trigger words" in res.output and "sks dog" in res.output


@pytest.mark.parametrize(
    ("native", "diffusers"),
    [
        ("families/sd35_large.comfy", "families/sd35_large.diffusers"),
        ("video/wan2.1-vace-14b.original", "video/wan2.1-vace-14b.diffusers"),
        ("video/wan2.1-i2v-14b.original", "video/wan2.1-i2v-14b.diffusers"),
        ("video/ltx2.original", "video/ltx2.diffusers"),
        ("video/hunyuan_video-i2v.original", "video/hunyuan_video-i2v.diffusers"),
        ("families/flux2_dev.original", "families/flux2_dev.diffusers"),
        ("families/chroma.comfy", "families/chroma.diffusers"),
    ],
    ids=["sd35_large", "wan-vace", "wan-i2v", "ltx2", "hunyuan_video", "flux2", "chroma"],
)
def test_dit_diffusers_names_apply_to_the_single_file_model(tmp_path: Path, native: str, diffusers: str) -> None:
    """A diffusers-named LoRA on every weight of the diffusers model fits the single-file release:
    fused q/k/v as rows, renamed modules by sdmodel.lora.namings (real key lists of both layouts)."""
    from tests.test_lora_namings import weights

    model = sparse(
        tmp_path, "model", {f"model.diffusion_model.{k}.weight": (s, "BF16") for k, s in weights(native).items()}
    )
    targets = {k: s for k, s in weights(diffusers).items() if len(s) in (2, 4)}  # the fixture's pairs: linear, conv2d
    r = check(sparse(tmp_path, "lora", L.peft(targets, rank=2)), model)
    assert str(r.verdict) == "applies fully to this model", r.examples_missing
