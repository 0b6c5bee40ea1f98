"""Upscale models (sdmodel.registry.upscalers): each architecture from the names and shapes
spandrel detects it by, the scale where the shapes tell it, the trainers' wrappers, where the file
goes, and no diffusion model or encoder ever taken for one (nor the reverse)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from sdmodel import registry
from sdmodel.cli import main_group
from sdmodel.formats import open_model
from sdmodel.formats.base import TensorInfo
from sdmodel.identify import identify
from sdmodel.placement import folder_problem, place
from tests.builders import Layout, write_ckpt
from tests.families import FAMILY_FIXTURES, clip_l, t2i_adapter, t5xxl, vae_only

F = "F32"


def infos(lay: Layout) -> dict[str, TensorInfo]:
    return {k: TensorInfo(k, d, s) for k, (s, d) in lay.items()}


def answer(lay: Layout) -> tuple[str | None, str | None, str]:
    """(signature, variant, description) from names and shapes alone."""
    found = registry.match(infos(lay))
    if found is None:
        return None, None, ""
    sig, root = found
    v = sig.variant(infos(lay), root)
    return sig.id, v.name, f"{sig.description} ({v.label})" if v.label else sig.description


def conv(out: int, inp: int, k: int = 3) -> tuple[tuple[int, ...], str]:
    return (out, inp, k, k), F


def esrgan_old(scale: int = 4, in_nc: int = 3, nf: int = 64) -> Layout:
    """ESRGAN's sequential names (e.g. 4x-UltraSharp): conv, RRDB trunk, per 2x (up, conv, act),
    HR conv, act, last conv."""
    lay: Layout = {"model.0.weight": conv(nf, in_nc), "model.0.bias": ((nf,), F)}
    for b in range(2):
        for r in (1, 2, 3):
            for c in range(1, 6):
                lay[f"model.1.sub.{b}.RDB{r}.conv{c}.0.weight"] = conv(32 if c < 5 else nf, nf + 32 * (c - 1))
    lay["model.1.sub.2.weight"] = conv(nf, nf)
    ups = {1: 0, 2: 1, 4: 2, 8: 3}[scale]
    convs = [3 + 3 * i for i in range(ups)] + [2 + 3 * ups]
    for i in convs:
        lay[f"model.{i}.weight"] = conv(nf, nf)
    lay[f"model.{4 + 3 * ups}.weight"] = conv(3, nf)
    return lay


def rrdbnet(in_ch: int = 3) -> Layout:
    """BasicSR RRDBNet (RealESRGAN_x4plus; x2plus pixel-unshuffles: 12 input channels)."""
    lay: Layout = {"conv_first.weight": conv(64, in_ch)}
    for b in range(2):
        for r in (1, 2, 3):
            for c in range(1, 6):
                lay[f"body.{b}.rdb{r}.conv{c}.weight"] = conv(32 if c < 5 else 64, 64 + 32 * (c - 1))
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        lay[f"{name}.weight"] = conv(64, 64)
    lay["conv_last.weight"] = conv(3, 64)
    return lay


def compact(num_conv: int = 4, scale: int = 4) -> Layout:
    """SRVGGNetCompact: conv, PReLU, (conv, PReLU) * num_conv, conv to 3 * scale**2."""
    lay: Layout = {"body.0.weight": conv(64, 3), "body.0.bias": ((64,), F), "body.1.weight": ((64,), F)}
    for i in range(num_conv):
        lay[f"body.{2 + 2 * i}.weight"] = conv(64, 64)
        lay[f"body.{3 + 2 * i}.weight"] = ((64,), F)
    last = 2 + 2 * num_conv
    lay[f"body.{last}.weight"] = conv(3 * scale * scale, 64)
    lay[f"body.{last}.bias"] = ((3 * scale * scale,), F)
    return lay


SWIN = "layers.0.residual_group.blocks.0."


def swinir() -> Layout:
    return {
        "conv_first.weight": conv(180, 3),
        "patch_embed.norm.weight": ((180,), F),
        SWIN + "norm1.weight": ((180,), F),
        SWIN + "attn.relative_position_bias_table": ((225, 6), F),
        SWIN + "attn.relative_position_index": ((64, 64), "I64"),
        SWIN + "attn.qkv.weight": ((540, 180), F),
        SWIN + "mlp.fc1.weight": ((360, 180), F),
        SWIN + "mlp.fc1.bias": ((360,), F),
        "conv_after_body.weight": conv(180, 180),
        "conv_before_upsample.0.weight": conv(64, 180),
        "upsample.0.weight": conv(256, 64),
        "upsample.2.weight": conv(256, 64),
        "conv_last.weight": conv(3, 64),
    }


def swin2sr() -> Layout:
    return swinir() | {"patch_embed.proj.weight": conv(180, 180, 1)}


def hat() -> Layout:
    lay = swinir() | {
        "relative_position_index_SA": ((256, 256), "I64"),
        "relative_position_index_OCA": ((256, 576), "I64"),
        SWIN + "conv_block.cab.0.weight": conv(60, 180),
        SWIN + "conv_block.cab.2.weight": conv(180, 60),
        "layers.0.residual_group.overlap_attn.relative_position_bias_table": ((729, 6), F),
        "layers.0.residual_group.overlap_attn.qkv.weight": ((540, 180), F),
    }
    del lay[SWIN + "attn.relative_position_index"]  # HAT keeps its indexes at the top level
    return lay


def dat() -> Layout:
    b = "layers.0.blocks.0."
    return {
        "conv_first.weight": conv(180, 3),
        "before_RG.1.weight": ((180,), F),
        "before_RG.1.bias": ((180,), F),
        b + "norm1.weight": ((180,), F),
        b + "ffn.fc1.weight": ((360, 180), F),
        b + "ffn.sg.conv.weight": ((180, 1, 3, 3), F),
        b + "attn.qkv.weight": ((540, 180), F),
        b + "attn.attns.0.rpe_biases": ((945, 2), F),
        b + "attn.attns.0.relative_position_index": ((256, 256), "I64"),
        "norm.weight": ((180,), F),
        "conv_after_body.weight": conv(180, 180),
        "conv_before_upsample.0.weight": conv(64, 180),
        "upsample.0.weight": conv(256, 64),
        "conv_last.weight": conv(3, 64),
    }


def span(scale: int = 4) -> Layout:
    return {
        "conv_1.sk.weight": conv(48, 3, 1),
        "conv_1.eval_conv.weight": conv(48, 3),
        "block_1.c1_r.sk.weight": conv(48, 48, 1),
        "block_1.c1_r.eval_conv.weight": conv(48, 48),
        "block_1.c3_r.eval_conv.weight": conv(48, 48),
        "conv_cat.weight": conv(48, 192, 1),
        "conv_2.sk.weight": conv(48, 48, 1),
        "conv_2.eval_conv.weight": conv(48, 48),
        "upsampler.0.weight": conv(3 * scale * scale, 48),
    }


def omnisr(scale: int = 2) -> Layout:
    return {
        "input.weight": conv(64, 3),
        "residual_layer.0.residual_layer.0.layer.0.fn.0.weight": ((64, 64, 1, 1), F),
        "up.0.weight": conv(3 * scale * scale, 64),
    }


CASES = [
    ("esrgan", esrgan_old, "esrgan", "4x"),
    ("esrgan", lambda: esrgan_old(scale=2), "esrgan", "2x"),
    ("esrgan", lambda: esrgan_old(scale=1), "esrgan", "1x"),
    ("esrgan", lambda: esrgan_old(scale=8), "esrgan", "8x"),
    ("esrgan", lambda: esrgan_old(in_nc=1), "esrgan", ""),  # grayscale: scale not said
    ("esrgan_rrdbnet", rrdbnet, "esrgan", "4x"),
    ("esrgan_rrdbnet", lambda: rrdbnet(12), "esrgan", "2x"),
    (
        "mmrealsr",
        lambda: rrdbnet() | {"am_list.0.fc.0.weight": ((64, 64), F), "de_net.conv_first.0.weight": conv(64, 3)},
        "mmrealsr",
        "",
    ),
    ("compact", compact, "compact", ""),
    ("swinir", swinir, "swinir", ""),
    ("swin2sr", swin2sr, "swin2sr", ""),
    ("hat", hat, "hat", ""),
    ("dat", dat, "dat", ""),
    ("span", span, "span", "4x"),
    ("span", lambda: span(2), "span", "2x"),
    ("omnisr", omnisr, "omnisr", "2x"),
]


@pytest.mark.parametrize(("sig", "build", "variant", "scale"), CASES)
@pytest.mark.parametrize("root", ["", "params_ema.", "params.", "module."])
def test_every_architecture(sig, build, variant, scale, root):
    lay = {root + k: v for k, v in build().items()}
    got, var, description = answer(lay)
    assert (got, var) == (sig, variant)
    assert description.endswith(f"({scale})") if scale else "x)" not in description
    assert registry.signature(got).network == "upscaler"  # type: ignore[union-attr]


def test_basicsr_pth_with_params_and_params_ema(tmp_path):
    """A Real-ESRGAN .pth as BasicSR saves it: {"params_ema": sd} (both sets in some releases)."""
    path = write_ckpt(tmp_path / "RealESRGAN_x4plus.pth", rrdbnet(), wrap=("params_ema",))
    with open_model(path) as src:
        ident = identify(src)
    assert (ident.kind, ident.family, ident.variant, ident.root) == ("upscaler", None, "esrgan", "params_ema.")
    assert ident.prediction == "unknown" and ident.description.endswith("(4x)")


def test_upscaler_end_to_end(sparse):
    with open_model(sparse(esrgan_old())) as src:
        ident = identify(src)
    assert (ident.kind, ident.variant, ident.signature) == ("upscaler", "esrgan", "esrgan")
    assert not ident.needs_text_encoders and ident.modelspec_architecture is None


@pytest.mark.parametrize(
    ("family", "variant", "kind", "build"), FAMILY_FIXTURES, ids=lambda x: x if isinstance(x, str) else None
)
def test_no_model_is_an_upscaler(family, variant, kind, build):
    sig = registry.signature(answer(build())[0])
    assert sig is None or sig.network != "upscaler"


def test_encoders_vaes_and_adapters_are_not_upscalers():
    for lay in (vae_only(), clip_l(), t5xxl(), t2i_adapter()):
        sig = registry.signature(answer(lay)[0])
        assert sig is not None and sig.network != "upscaler", sig


def test_loose_lookalikes_stay_unknown():
    """Half of a network is not an upscaler: each probe set needs its telling keys together."""
    assert answer({"body.0.weight": conv(64, 3), "body.2.weight": conv(64, 64)})[0] is None  # no PReLU
    assert answer({"conv_first.weight": conv(64, 3), "conv_last.weight": conv(3, 64)})[0] is None
    assert answer({"model.0.weight": conv(64, 3)})[0] is None


def test_placement_per_architecture():
    p = place("upscaler", None, "esrgan")
    a1111, comfy, swarm = p.target("a1111"), p.target("comfyui"), p.target("swarmui")
    assert a1111 is not None and a1111.folder == "models/ESRGAN"
    assert comfy is not None and (comfy.folder, comfy.loader) == ("models/upscale_models", "UpscaleModelLoader")
    assert swarm is not None and swarm.folder == "Models/upscale_models"
    assert place("upscaler", None, "swinir").target("a1111").folder == "models/SwinIR"  # type: ignore[union-attr]
    assert place("upscaler", None, "dat").target("a1111").folder == "models/DAT"  # type: ignore[union-attr]
    assert place("upscaler", None, "hat").target("a1111").folder == "models/ESRGAN"  # type: ignore[union-attr]


def test_folder_problems():
    swin = place("upscaler", None, "swinir")
    assert folder_problem("sd/models/ESRGAN/4x_swinir.pth", swin) is None  # A1111 loads it there too
    assert folder_problem("sd/models/SwinIR/x.pth", swin) is None
    assert folder_problem("ComfyUI/models/upscale_models/x.pth", swin) is None
    esrgan = place("upscaler", None, "esrgan")
    assert folder_problem("sd/models/ESRGAN/4x-UltraSharp.pth", esrgan) is None
    assert "models/ESRGAN" in str(folder_problem("sd/models/RealESRGAN/4x-UltraSharp.pth", esrgan))
    assert "models/upscale_models" in str(folder_problem("ComfyUI/models/checkpoints/4x.pth", esrgan))
    lone = place("unet", "flux", "dev")
    assert "models/diffusion_models" in str(folder_problem("ComfyUI/models/upscale_models/flux.safetensors", lone))


def test_info_json_says_where_and_gives_no_conversion(tmp_path):
    folder = tmp_path / "ComfyUI" / "models" / "upscale_models"
    folder.mkdir(parents=True)
    model = write_ckpt(folder / "4x-UltraSharp.pth", esrgan_old(), wrap=())
    out = CliRunner().invoke(main_group, terminal_width=200, args=["info", "--json", str(model)])
    assert out.exit_code == 0, out.output
    d = json.loads(out.output)
    assert (d["kind"], d["family"], d["variant"]) == ("upscaler", None, "esrgan")
    assert d["placement"]["targets"]["comfyui"]["folder"] == "models/upscale_models"
    notes = d["advice"]["notes"]
    assert any("(upscale) model" in n and "Load Upscale Model" in n for n in notes), notes
    assert d["advice"]["generate"] is None
