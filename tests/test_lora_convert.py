"""LoRA names between kohya, diffusers and ComfyUI: names as diffusers' own converter makes them,
alpha semantics kept (diffusers reads our lora_adapter_metadata), round trips give the same tensors,
and diffusers (with PEFT) loads our output into a real model with the same result."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from sdmodel.engine import execute
from sdmodel.errors import ConversionError
from sdmodel.formats import open_model
from sdmodel.lora.convert import METADATA_KEY, apply_lora_format, unflatten
from sdmodel.lora.keys import split_key
from sdmodel.lora.names import flat
from sdmodel.plan import initial_plan
from tests import lora_layouts as L
from tests import test_lora_namings as N

rng = np.random.default_rng(1)


def values(lay, rank_scale: float = 0.1) -> dict[str, np.ndarray]:
    out = {}
    for k, (shape, _d) in lay.items():
        out[k] = (
            np.array(float(rng.integers(1, 8)), np.float32)
            if k.endswith(".alpha")
            else (rank_scale * rng.standard_normal(shape)).astype(np.float32)
        )
    return out


def convert(tmp_path: Path, tensors: dict[str, np.ndarray], fmt: str, family: str, metadata=None, name="out"):
    src_path = tmp_path / f"{name}-in.safetensors"
    save_file(tensors, str(src_path), metadata=metadata)
    out = tmp_path / f"{name}.safetensors"
    with open_model(src_path) as src:
        plan = initial_plan(src)
        changes = apply_lora_format(plan, fmt, family)
        md = dict(src.metadata)
        for k, v in changes.items():
            if v is None:
                md.pop(k, None)
            else:
                md[k] = v
        execute(plan, out, fmt="safetensors", metadata=md or None, overwrite=True)
    with open_model(out) as o:
        meta = dict(o.metadata)
    return load_file(str(out)), meta


def small_sd1_kohya() -> dict[str, np.ndarray]:
    mods = {
        "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k": (32, 24),
        "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0": (32, 32),
        "mid_block.attentions.0.proj_in": (64, 64),
        "up_blocks.1.attentions.0.transformer_blocks.0.ff.net.0.proj": (256, 32),
    }
    lay = L.merged(
        L.kohya(mods, rank=2), L.kohya({"text_model.encoder.layers.0.self_attn.q_proj": (24, 24)}, "lora_te_", rank=2)
    )
    return values(lay)


def test_unflatten() -> None:
    assert (
        unflatten("up_blocks_1_attentions_0_transformer_blocks_0_ff_net_0_proj")
        == "up_blocks.1.attentions.0.transformer_blocks.0.ff.net.0.proj"
    )
    assert unflatten("text_model_encoder_layers_11_mlp_fc2") == "text_model.encoder.layers.11.mlp.fc2"
    assert unflatten("single_blocks_37_modulation_lin") == "single_blocks.37.modulation.lin"


@pytest.mark.parametrize("fmt", ["diffusers", "comfy", "kohya"])
def test_sd1_round_trip_same_tensors(tmp_path: Path, fmt: str) -> None:
    orig = small_sd1_kohya()
    there, meta = convert(tmp_path, orig, fmt, "sd1", name="there")
    back, _ = convert(tmp_path, there, "kohya", "sd1", metadata=meta, name="back")
    assert sorted(back) == sorted(orig)
    for k in orig:
        np.testing.assert_array_equal(back[k], orig[k])


def test_sd1_names_match_diffusers_converter(tmp_path: Path) -> None:
    from diffusers.loaders.lora_conversion_utils import _convert_non_diffusers_lora_to_diffusers

    orig = small_sd1_kohya()
    ours, meta = convert(tmp_path, orig, "diffusers", "sd1")
    theirs, alphas = _convert_non_diffusers_lora_to_diffusers({k: torch.from_numpy(v) for k, v in orig.items()})

    def module(k: str) -> str:  # diffusers still writes the attention-processor spellings
        split = split_key(k)
        assert split is not None, k
        return flat(split[0])

    unet = lambda keys: {module(k) for k in keys if k.startswith("unet.")}  # noqa: E731
    assert unet(ours) == unet(theirs)
    # text encoder: diffusers' intermediate names say to_q, its loader turns them into CLIP's q_proj
    assert "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight" in ours
    pattern = json.loads(meta[METADATA_KEY])
    ours_alpha = {
        flat(f"{c}.{m}"): a for c in ("unet", "text_encoder") for m, a in pattern[f"{c}.alpha_pattern"].items()
    }
    for key, alpha in alphas.items():
        if not key.startswith("unet."):
            continue
        name = key[: -len(".alpha")]
        split = split_key(name)
        assert ours_alpha[module(name) if split else flat(name)] == pytest.approx(float(alpha))


def test_sdxl_kohya_to_comfy_and_diffusers(tmp_path: Path) -> None:
    mods = {"input_blocks.4.1.transformer_blocks.0.attn2.to_k": (640, 2048), "output_blocks.0.1.proj_out": (1280, 1280)}
    orig = values(
        L.merged(
            L.kohya(mods, rank=2), L.kohya({"text_model.encoder.layers.0.mlp.fc1": (5120, 1280)}, "lora_te2_", rank=2)
        )
    )
    comfy, _ = convert(tmp_path, orig, "comfy", "sdxl", name="c")
    assert "diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.lora_up.weight" in comfy
    assert "text_encoders.clip_g.transformer.text_model.encoder.layers.0.mlp.fc1.alpha" in comfy
    diff, _ = convert(tmp_path, orig, "diffusers", "sdxl", name="d")
    assert "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight" in diff
    assert "unet.up_blocks.0.attentions.0.proj_out.lora_B.weight" in diff
    assert "text_encoder_2.text_model.encoder.layers.0.mlp.fc1.lora_A.weight" in diff


def test_flux_split_and_join(tmp_path: Path) -> None:
    h = 16
    mods = {
        "double_blocks.0.img_attn.qkv": (3 * h, h),
        "single_blocks.0.linear1": (7 * h, h),
        "double_blocks.0.img_mod.lin": (6 * h, h),
    }
    orig = values(L.kohya(mods, rank=2))
    diff, meta = convert(tmp_path, orig, "diffusers", "flux", name="d")
    up = orig["lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight"]
    np.testing.assert_array_equal(diff["transformer.transformer_blocks.0.attn.to_k.lora_B.weight"], up[h : 2 * h])
    np.testing.assert_array_equal(
        diff["transformer.single_transformer_blocks.0.proj_mlp.lora_B.weight"],
        orig["lora_unet_single_blocks_0_linear1.lora_up.weight"][3 * h :],
    )
    assert "transformer.transformer_blocks.0.norm1.linear.lora_A.weight" in diff
    back, _ = convert(tmp_path, diff, "kohya", "flux", metadata=meta, name="b")
    assert sorted(back) == sorted(orig)
    for k in orig:
        np.testing.assert_array_equal(back[k], orig[k])


def test_flux_separately_trained_parts_join_block_diagonal(tmp_path: Path) -> None:
    """diffusers-trained q/k/v (own downs, ranks; v left out) and the single block's four parts become
    one block-diagonal BFL target each; merged into a model, it changes it exactly as the parts do."""
    from tests.test_lora_merge import merge

    h = 16
    mods = {
        "transformer_blocks.0.attn.to_q": ((h, h), 2),
        "transformer_blocks.0.attn.to_k": ((h, h), 4),
        **{f"single_transformer_blocks.0.attn.to_{c}": ((h, h), 2) for c in "qkv"},
        "single_transformer_blocks.0.proj_mlp": ((4 * h, h), 2),
    }
    lora = {}
    for m, (shape, rank) in mods.items():
        lora |= values(L.peft({m: shape}, rank=rank))
    kohya, _meta = convert(tmp_path, lora, "kohya", "flux")
    assert kohya["lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight"].shape == (3 * h, 6)
    assert kohya["lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight"].shape == (6, h)
    assert float(kohya["lora_unet_double_blocks_0_img_attn_qkv.alpha"]) == 6.0  # alpha/rank 1 kept
    assert kohya["lora_unet_single_blocks_0_linear1.lora_up.weight"].shape == (7 * h, 8)
    model = {"double_blocks.0.img_attn.qkv.weight": values({"w": ((3 * h, h), "F32")})["w"]}
    model["single_blocks.0.linear1.weight"] = values({"w": ((7 * h, h), "F32")})["w"]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    want, _ = merge(tmp_path / "a", model, [(lora, 0.8)])
    got, _ = merge(tmp_path / "b", model, [(kohya, 0.8)])
    for k in model:
        assert not np.array_equal(got[k], model[k])
        np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=1e-7)
    back, _ = convert(tmp_path, kohya, "diffusers", "flux", name="back")
    assert "transformer.transformer_blocks.0.attn.to_v.lora_B.weight" in back


def test_parts_with_different_scales_refuse(tmp_path: Path) -> None:
    lay = {}
    for c, rank in zip("qkv", (2, 4, 2), strict=True):
        lay |= L.kohya({f"transformer_blocks.0.attn.to_{c}": (16, 16)}, "lora_transformer_", rank=rank)
    tensors = values(lay)
    for c, alpha in zip("qkv", (2.0, 2.0, 2.0), strict=True):
        tensors[f"lora_transformer_transformer_blocks_0_attn_to_{c}.alpha"] = np.array(alpha, np.float32)
    with pytest.raises(ConversionError, match="cannot be joined"):
        convert(tmp_path, tensors, "comfy", "flux")


def test_refusals(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="defined for"):
        convert(
            tmp_path, values(L.kohya({"transformer_blocks.0.attn1.to_q": (8, 8)}, rank=2)), "diffusers", "cogvideox"
        )
    with pytest.raises(ConversionError, match=r"wan has no module blocks\.0\.self_attn\.qq"):
        convert(tmp_path, values(L.kohya({"blocks.0.self_attn.qq": (8, 8)}, rank=2)), "diffusers", "wan")
    with pytest.raises(ConversionError, match=r"no sd3 module for diffusers module transformer_blocks\.0\.attn\.to_z"):
        convert(tmp_path, values(L.peft({"transformer_blocks.0.attn.to_z": (8, 8)}, rank=2)), "kohya", "sd3")
    loha = {"lora_unet_mid_block_attentions_0_proj_in.hada_w1_a": np.ones((4, 2), np.float32)}
    loha |= {
        f"lora_unet_mid_block_attentions_0_proj_in.hada_{n}": np.ones(s, np.float32)
        for n, s in (("w1_b", (2, 4)), ("w2_a", (4, 2)), ("w2_b", (2, 4)))
    }
    with pytest.raises(ConversionError, match="only plain LoRA"):
        convert(tmp_path, loha, "diffusers", "sd1")
    stem = "lora_unet_mid_block_attentions_0_proj_in"
    dora = {
        stem + ".lora_down.weight": np.ones((2, 4), np.float32),
        stem + ".lora_up.weight": np.ones((4, 2), np.float32),
    }
    dora[stem + ".dora_scale"] = np.ones((4, 1), np.float32)
    with pytest.raises(ConversionError, match=r"only plain LoRA targets can be renamed \(DoRA found\)"):
        convert(tmp_path, dora, "diffusers", "sd1")


def test_diffusers_loads_our_output(tmp_path: Path) -> None:
    """kohya -> diffusers by us, loaded by diffusers + PEFT into a small UNet and fused: every weight
    moved by alpha/rank * up @ down of the kohya file."""
    pytest.importorskip("peft")
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=24,
        attention_head_dim=8,
        norm_num_groups=8,
        sample_size=8,
    )
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    orig = {k: v for k, v in small_sd1_kohya().items() if k.startswith("lora_unet_")}
    orig = {k: v for k, v in orig.items() if "mid_block" not in k and "up_blocks_1" not in k}
    out_path = tmp_path / "d.safetensors"
    tensors, meta = convert(tmp_path, orig, "diffusers", "sd1")
    save_file(tensors, str(out_path), metadata=meta)
    sd, _alphas, md = StableDiffusionPipeline.lora_state_dict(str(out_path), return_lora_metadata=True)
    unet.load_lora_adapter(sd, prefix="unet", metadata=md)
    unet.fuse_lora()
    unet.unload_lora()
    after = unet.state_dict()
    for stem in {k.rsplit(".", 2)[0] for k in orig}:
        module = unflatten(stem[len("lora_unet_") :])
        up, down = orig[stem + ".lora_up.weight"], orig[stem + ".lora_down.weight"]
        scale = float(orig[stem + ".alpha"]) / down.shape[0]
        want = before[module + ".weight"] + scale * (torch.from_numpy(up) @ torch.from_numpy(down))
        torch.testing.assert_close(after[module + ".weight"], want, rtol=1e-5, atol=1e-6)


def test_cli_convert_lora_format(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from sdmodel.cli import main_group

    lay = L.merged(L.kohya(L.unet_attn(L.SD1_UNET), rank=2), L.kohya(L.clip_hf(768, 12), "lora_te_", rank=2))
    src = tmp_path / "style.safetensors"
    save_file(values(lay, 0.01), str(src), metadata={"ss_base_model_version": "sd_v1", "ss_tag_frequency": "{}"})
    runner = CliRunner()
    res = runner.invoke(
        main_group, ["convert", str(src), "--lora-format", "diffusers", "-o", str(tmp_path / "d.safetensors")]
    )
    assert res.exit_code == 0, res.output
    with open_model(tmp_path / "d.safetensors") as d:
        assert d.metadata["ss_base_model_version"] == "sd_v1"
        assert METADATA_KEY in d.metadata
        assert all(k.startswith(("unet.", "text_encoder.")) for k in d.tensors)
    res = runner.invoke(
        main_group,
        ["convert", str(tmp_path / "d.safetensors"), "--lora-format", "kohya", "-o", str(tmp_path / "k.safetensors")],
    )
    assert res.exit_code == 0, res.output
    back = load_file(str(tmp_path / "k.safetensors"))
    orig = load_file(str(src))
    assert sorted(back) == sorted(orig)
    with open_model(tmp_path / "k.safetensors") as k:
        assert METADATA_KEY not in k.metadata
    res = runner.invoke(main_group, ["convert", str(src), "--lora-format", "nope"])
    assert res.exit_code != 0 and "nope" in res.output


# --- the DiT families: real module lists, diffusers' own converters as the reference ----------------


def layout_lora(name: str, select: str, naming: str = "kohya") -> dict[str, np.ndarray]:
    """A kohya (musubi-tuner) or ComfyUI LoRA on the weights of a real single-file layout whose path
    matches ``select``."""
    mods = {p: s for p, s in N.weights(name).items() if re.search(select, p)}
    return values((L.kohya if naming == "kohya" else L.comfy)(mods, rank=2), rank_scale=0.05)


def effective(tensors: dict[str, np.ndarray], alphas: dict[str, float], module: str) -> np.ndarray:
    """alpha/rank * up @ down applied to a fixed probe vector (the full product is large)."""
    up, down = tensors[module + ".lora_B.weight"], tensors[module + ".lora_A.weight"]
    probe = np.linspace(-1.0, 1.0, down.shape[1])
    return alphas.get(module, float(down.shape[0])) / down.shape[0] * (up.astype(np.float64) @ (down @ probe))


def peft_alphas(meta: dict[str, str]) -> dict[str, float]:
    pattern = json.loads(meta[METADATA_KEY])
    return {f"transformer.{m}": a for m, a in pattern["transformer.alpha_pattern"].items()}


CASES = [
    (
        "wan",
        "video/wan2.1-i2v-14b.original",
        r"^(blocks\.[01]\.|head|time_projection|text_embedding|time_embedding|img_emb)",
    ),
    ("wan", "video/wan2.1-vace-1.3b.original", r"^(vace_)?blocks\.0\."),
    (
        "sd3",
        "families/sd35_medium.comfy",
        r"^(joint_blocks\.(0|23)\.|final_layer|x_embedder|t_embedder|y_embedder|context_embedder)",
    ),
    (
        "qwen_image",
        "families/qwen_image.comfy",
        r"^(transformer_blocks\.0\.|img_in|txt_in|proj_out|norm_out|time_text_embed)",
    ),
    (
        "ltxv",
        "video/ltxv-2b.original",
        r"^(transformer_blocks\.0\.|patchify_proj|adaln_single|caption_projection|proj_out)",
    ),
    ("hidream", "families/hidream_i1.comfy", r"^(double_stream_blocks\.0\.|single_stream_blocks\.0\.)"),
    ("chroma", "families/chroma.comfy", r"^(double_blocks\.0\.|single_blocks\.0\.|distilled_guidance_layer|img_in)"),
    (
        "flux2",
        "families/flux2_klein4b.original",
        r"^(double_blocks\.0\.|single_blocks\.0\.|final_layer|\w+_modulation)",
    ),
    (
        "hunyuan_video",
        "video/hunyuan_video-t2v.original",
        r"^(double_blocks\.0\.|single_blocks\.0\.|txt_in\.|final_layer|vector_in)",
    ),
    ("lumina2", "families/lumina2.comfy", r"^(layers\.0\.|noise_refiner\.0\.|final_layer|t_embedder)"),
    ("z_image", "families/z_image.original", r"^(layers\.0\.|context_refiner\.0\.|final_layer|x_embedder|cap_)"),
    ("pixart", "families/pixart_alpha.comfy", r"^(blocks\.0\.|t_block|y_embedder|csize|ar_embedder|final_layer)"),
    ("sana", "families/sana.original", r"^(blocks\.0\.|t_block|y_embedder|x_embedder|final_layer)"),
    ("auraflow", "families/auraflow.comfy", r"^(double_layers\.0\.|single_layers\.0\.|modF|init_x|cond_seq)"),
]


@pytest.mark.parametrize(("family", "layout", "select"), CASES, ids=[c[1].split("/")[1] for c in CASES])
def test_dit_round_trips_give_the_same_tensors(tmp_path: Path, family: str, layout: str, select: str) -> None:
    orig = layout_lora(layout, select)
    for fmt in ("diffusers", "comfy"):
        there, meta = convert(tmp_path, orig, fmt, family, name=f"there-{fmt}")
        back, _ = convert(tmp_path, there, "kohya", family, metadata=meta, name=f"back-{fmt}")
        assert sorted(back) == sorted(orig)
        for k in orig:
            np.testing.assert_array_equal(back[k], orig[k])


@pytest.mark.parametrize(("family", "layout", "select"), CASES, ids=[c[1].split("/")[1] for c in CASES])
def test_dit_diffusers_output_fits_the_diffusers_model(tmp_path: Path, family: str, layout: str, select: str) -> None:
    """Every module of our diffusers output is a weight of the diffusers model, with up @ down of its shape."""
    diffusers_layout = layout.replace(".original", ".diffusers").replace(".comfy", ".diffusers")
    theirs = N.weights(diffusers_layout)
    ours, _meta = convert(tmp_path, layout_lora(layout, select), "diffusers", family)
    for key, a in ours.items():
        if key.endswith(".lora_B.weight"):
            module = key[len("transformer.") : -len(".lora_B.weight")]
            down = ours[key.replace(".lora_B.", ".lora_A.")]
            assert theirs[module][:2] == (a.shape[0], down.shape[1]), module


def test_sd3_fused_and_swapped_rows(tmp_path: Path) -> None:
    """MMDiT's qkv splits into diffusers' to_q/to_k/to_v; the final adaLN and the last block's context
    adaLN (2 chunks) come out with their halves swapped, as diffusers' checkpoint conversion stores them;
    the other blocks' context adaLN (6 chunks) does not."""
    orig = layout_lora(
        "families/sd35_medium.comfy",
        r"^(joint_blocks\.(0|23)\.(x|context)_block\.(attn\.qkv|adaLN)|final_layer\.adaLN)",
    )
    ours, _ = convert(tmp_path, orig, "diffusers", "sd3")
    up = orig["lora_unet_joint_blocks_0_x_block_attn_qkv.lora_up.weight"]
    h = up.shape[0] // 3
    np.testing.assert_array_equal(ours["transformer.transformer_blocks.0.attn.to_v.lora_B.weight"], up[2 * h :])
    for native, diffusers in (
        ("final_layer_adaLN_modulation_1", "norm_out.linear"),
        ("joint_blocks_23_context_block_adaLN_modulation_1", "transformer_blocks.23.norm1_context.linear"),
    ):
        up = orig[f"lora_unet_{native}.lora_up.weight"]
        half = up.shape[0] // 2
        np.testing.assert_array_equal(
            ours[f"transformer.{diffusers}.lora_B.weight"], np.concatenate([up[half:], up[:half]])
        )
    np.testing.assert_array_equal(
        ours["transformer.transformer_blocks.0.norm1_context.linear.lora_B.weight"],
        orig["lora_unet_joint_blocks_0_context_block_adaLN_modulation_1.lora_up.weight"],
    )


@pytest.mark.parametrize(
    ("family", "layout", "select", "reference", "naming"),
    [
        ("wan", "video/wan2.1-i2v-14b.original", r"^blocks\.[01]\.", "_convert_musubi_wan_lora_to_diffusers", "kohya"),
        (
            "wan",
            "video/wan2.1-i2v-14b.original",
            r"^(blocks\.[01]\.|head|time_projection|text_embedding|time_embedding|img_emb)",
            "_convert_non_diffusers_wan_lora_to_diffusers",
            "comfy",
        ),
        (
            "qwen_image",
            "families/qwen_image.comfy",
            r"^(transformer_blocks\.[01]\.|img_in|txt_in|proj_out)",
            "_convert_non_diffusers_qwen_lora_to_diffusers",
            "kohya",
        ),
        (
            "z_image",
            "families/z_image.original",
            r"^layers\.[01]\.(attention\.out|feed_forward|adaLN)",  # diffusers' converter does not split qkv
            "_convert_non_diffusers_z_image_lora_to_diffusers",
            "kohya",
        ),
    ],
    ids=["wan-musubi", "wan-comfy", "qwen-kohya", "z_image-kohya"],
)
def test_dit_names_and_scales_match_diffusers_converters(
    tmp_path: Path, family: str, layout: str, select: str, reference: str, naming: str
) -> None:
    """Same modules as diffusers' own converter, and the same effective delta: diffusers bakes
    alpha/rank into the weights, we carry it in lora_adapter_metadata."""
    from diffusers.loaders import lora_conversion_utils

    orig = layout_lora(layout, select, naming)
    if naming == "comfy":  # diffusers' Wan converter reads alphas of block modules only
        orig = {k: v for k, v in orig.items() if ".blocks." in k or not k.endswith(".alpha")}
    ours, meta = convert(tmp_path, orig, "diffusers", family)
    theirs = getattr(lora_conversion_utils, reference)({k: torch.from_numpy(v.copy()) for k, v in orig.items()})
    theirs = {k: v.numpy() for k, v in theirs.items()}
    assert sorted(ours) == sorted(theirs)
    alphas = peft_alphas(meta)
    for key in ours:
        if key.endswith(".lora_B.weight"):
            module = key[: -len(".lora_B.weight")]
            np.testing.assert_allclose(
                effective(ours, alphas, module), effective(theirs, {}, module), rtol=1e-5, atol=1e-7
            )


def test_prune_keeps_a_lora_files_own_weights(tmp_path: Path) -> None:
    """``lora_unet_...`` tensors are junk in a checkpoint (a LoRA merged by accident), but they are
    a LoRA file's weights: --prune keeps them and the dry-run table calls them ``lora``."""
    from sdmodel.plan import build_plan

    src = tmp_path / "style.safetensors"
    save_file(small_sd1_kohya(), str(src))
    with open_model(src) as s:
        plan = build_plan(s, prune=True)
        assert len(plan.steps) == len(s.tensors) and not plan.dropped
        assert {row["part"] for row in plan.summary()} == {"lora"}


TINY_DITS = {
    "flux": (
        "FluxTransformer2DModel",
        {
            "patch_size": 1,
            "in_channels": 8,
            "num_layers": 1,
            "num_single_layers": 1,
            "attention_head_dim": 8,
            "num_attention_heads": 2,
            "joint_attention_dim": 16,
            "pooled_projection_dim": 16,
            "guidance_embeds": True,
            "axes_dims_rope": (2, 2, 4),
        },
    ),
    "wan": (
        "WanTransformer3DModel",
        {
            "patch_size": (1, 2, 2),
            "num_attention_heads": 2,
            "attention_head_dim": 8,
            "in_channels": 4,
            "out_channels": 4,
            "text_dim": 16,
            "freq_dim": 16,
            "ffn_dim": 32,
            "num_layers": 1,
            "rope_max_seq_len": 32,
        },
    ),
}


@pytest.mark.parametrize("family", sorted(TINY_DITS))
def test_diffusers_loads_our_dit_output(tmp_path: Path, family: str) -> None:
    """A kohya LoRA on a DiT's single-file names (every linear of a tiny model), converted by us to
    diffusers and loaded by diffusers + PEFT: each weight moves by alpha/rank * up @ down of the kohya
    target (the rows of a fused one), the halves of a swapped one exchanged."""
    pytest.importorskip("peft")
    import diffusers

    from sdmodel.lora.namings import NAMES

    cls_name, config = TINY_DITS[family]
    torch.manual_seed(0)
    model = getattr(diffusers, cls_name)(**config)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    names = NAMES[family]
    mapped = {
        k[: -len(".weight")]: m
        for k, w in before.items()
        if k.endswith(".weight") and w.ndim == 2 and (m := names.to_native(k[: -len(".weight")])) is not None
    }
    native: dict[str, tuple[int, ...]] = {}
    for module, m in mapped.items():
        rows, width = before[module + ".weight"].shape
        native[m.path] = (native.get(m.path, (0,))[0] + rows, width)
    where: dict[str, tuple[str, int, bool]] = {}  # diffusers module -> (native module, first row, swapped)
    for module, m in mapped.items():
        sizes = m.fused.sizes(*native[m.path]) if m.fused is not None and m.part is not None else []
        where[module] = (m.path, sum(sizes[: m.part]) if sizes else 0, m.swapped)
    orig = values(L.kohya(native, rank=2))
    out_path = tmp_path / "d.safetensors"
    tensors, meta = convert(tmp_path, orig, "diffusers", family)
    save_file(tensors, str(out_path), metadata=meta)
    pipeline = diffusers.FluxPipeline if family == "flux" else diffusers.WanPipeline
    loaded = pipeline.lora_state_dict(str(out_path), return_lora_metadata=True)
    sd, md = loaded[0], loaded[-1]  # Flux's also returns network alphas in the middle
    model.load_lora_adapter(sd, prefix="transformer", metadata=md)
    model.fuse_lora()
    model.unload_lora()
    after = model.state_dict()
    for module, (path, row, swapped) in where.items():
        stem = "lora_unet_" + path.replace(".", "_")
        up, down = torch.from_numpy(orig[stem + ".lora_up.weight"]), torch.from_numpy(orig[stem + ".lora_down.weight"])
        delta = float(orig[stem + ".alpha"]) / down.shape[0] * (up @ down)
        if swapped:
            half = delta.shape[0] // 2
            delta = torch.cat([delta[half:], delta[:half]])
        rows = before[module + ".weight"].shape[0]
        want = before[module + ".weight"] + delta[row : row + rows]
        torch.testing.assert_close(after[module + ".weight"], want, rtol=1e-5, atol=1e-6, msg=module)
