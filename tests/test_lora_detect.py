"""LoRA format, algorithm and base family from real names and shapes, in every naming; every
family a rule could wrongly catch has a negative case (the known wrong answers of the old table)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sdmodel.formats import open_model
from sdmodel.lora.info import LoraInfo, describe
from sdmodel.lora.keys import parse
from tests import lora_layouts as L
from tests.builders import Layout, write_sparse_safetensors

D = L.diffusers_modules
LIN = L.linear_modules


def info_of(tmp_path: Path, lay: Layout, metadata: dict[str, str] | None = None) -> LoraInfo:
    path = write_sparse_safetensors(tmp_path / "lora.safetensors", lay, metadata)
    with open_model(path) as src:
        found = describe(src)
    assert found is not None
    return found


def sdxl_kohya() -> Layout:
    return L.merged(
        L.kohya(L.ldm_unet("sdxl-base")),
        L.kohya(L.clip_hf(768, 12), "lora_te1_"),
        L.kohya(L.clip_hf(1280, 32), "lora_te2_"),
    )


def flux_kohya_with_clip() -> Layout:
    return L.merged(L.kohya(L.flux_bfl()), L.kohya(L.clip_hf(768, 12), "lora_te1_"))


# (case, layout builder, family, format)
CASES = [
    (
        "sd1 kohya",
        lambda: L.merged(L.kohya(L.unet_attn(L.SD1_UNET)), L.kohya(L.clip_hf(768, 12), "lora_te_")),
        "sd1",
        "kohya",
    ),
    ("sd1 peft", lambda: L.peft(L.unet_attn(L.SD1_UNET), "unet."), "sd1", "diffusers"),
    ("sd2 kohya", lambda: L.kohya(L.unet_attn(L.SD2_UNET)), "sd2", "kohya"),
    ("sdxl kohya", sdxl_kohya, "sdxl", "kohya"),
    ("sdxl peft", lambda: L.peft(L.unet_attn(L.SDXL_UNET), "unet."), "sdxl", "diffusers"),
    ("sdxl comfy", lambda: L.comfy(L.ldm_unet("sdxl-base")), "sdxl", "comfy"),
    ("flux kohya + clip-l", flux_kohya_with_clip, "flux", "kohya"),
    ("flux comfy", lambda: L.comfy(L.flux_bfl()), "flux", "comfy"),
    ("flux diffusers", lambda: L.peft(LIN(D("FluxTransformer2DModel"))), "flux", "diffusers"),
    ("flux onetrainer", lambda: L.kohya(LIN(D("FluxTransformer2DModel")), "lora_transformer_"), "flux", "onetrainer"),
    ("flux2 diffusers", lambda: L.peft(LIN(D("Flux2Transformer2DModel"))), "flux2", "diffusers"),
    ("hunyuan video diffusers", lambda: L.peft(LIN(D("HunyuanVideoTransformer3DModel"))), "hunyuan_video", "diffusers"),
    ("hunyuan video musubi", lambda: L.kohya(L.hunyuan_video_original()), "hunyuan_video", "musubi-tuner"),
    ("hunyuan video diffusion-pipe", lambda: L.peft(L.hunyuan_video_original()), "hunyuan_video", "diffusers"),
    (
        "sd3 diffusers",
        lambda: L.peft(
            LIN(D("SD3Transformer2DModel", num_layers=24, num_attention_heads=24, caption_projection_dim=1536))
        ),
        "sd3",
        "diffusers",
    ),
    ("auraflow diffusers", lambda: L.peft(LIN(D("AuraFlowTransformer2DModel"))), "auraflow", "diffusers"),
    ("qwen image diffusers", lambda: L.peft(LIN(D("QwenImageTransformer2DModel"))), "qwen_image", "diffusers"),
    (
        "qwen image attention only",
        lambda: L.peft(LIN(D("QwenImageTransformer2DModel"), r"attn\.(to_[qkv]|add_[qkv]_proj)$")),
        "qwen_image",
        "diffusers",
    ),
    ("wan diffusers", lambda: L.peft(LIN(D("WanTransformer3DModel"))), "wan", "diffusers"),
    ("wan musubi", lambda: L.kohya(L.wan_original()), "wan", "musubi-tuner"),
    ("wan comfy", lambda: L.comfy(L.wan_original(30, 1536, 8960)), "wan", "comfy"),
    ("ltxv diffusers", lambda: L.peft(LIN(D("LTXVideoTransformer3DModel"))), "ltxv", "diffusers"),
    ("cosmos diffusers", lambda: L.peft(LIN(D("CosmosTransformer3DModel"))), "cosmos", "diffusers"),
    (
        "hunyuan dit diffusers",
        lambda: L.peft(LIN(D("HunyuanDiT2DModel", in_channels=4, patch_size=2))),
        "hunyuan_dit",
        "diffusers",
    ),
    ("cogvideox diffusers", lambda: L.peft(LIN(D("CogVideoXTransformer3DModel"))), "cogvideox", "diffusers"),
    ("mochi diffusers", lambda: L.peft(LIN(D("MochiTransformer3DModel"))), "mochi", "diffusers"),
    ("pixart diffusers", lambda: L.peft(LIN(D("PixArtTransformer2DModel"))), "pixart", "diffusers"),
    ("sana diffusers", lambda: L.peft(LIN(D("SanaTransformer2DModel"))), "sana", "diffusers"),
    (
        "lumina2 diffusers",
        lambda: L.peft(LIN(D("Lumina2Transformer2DModel"), r"(layers|refiner)")),
        "lumina2",
        "diffusers",
    ),
    (
        "z-image diffusers",
        lambda: L.peft(LIN(D("ZImageTransformer2DModel"), r"(layers|refiner)")),
        "z_image",
        "diffusers",
    ),
    (
        "chroma diffusers",
        lambda: L.peft(LIN(D("ChromaTransformer2DModel"), r"blocks|distilled_guidance")),
        "chroma",
        "diffusers",
    ),
]


@pytest.mark.parametrize(("case", "build", "family", "naming"), CASES, ids=[c[0] for c in CASES])
def test_family_and_format(tmp_path: Path, case: str, build, family: str, naming: str) -> None:
    info = info_of(tmp_path, build())
    assert (info.family, info.format) == (family, naming), case
    assert info.family_source == "key names"


def test_flux_clip_lora_is_not_sdxl(tmp_path: Path) -> None:
    info = info_of(tmp_path, flux_kohya_with_clip())
    assert info.family == "flux"
    assert info.trains == {"diffusion model": len(L.flux_bfl()), "text encoder 1": len(L.clip_hf(768, 12))}


@pytest.mark.parametrize(
    "build",
    [
        lambda: L.kohya(L.flux_bfl(mods=False)),  # Flux or Chroma: attention and MLP only
        lambda: L.peft(LIN(D("ChromaTransformer2DModel"), r"transformer_blocks")),  # no guidance layer: cannot tell
        lambda: L.kohya(L.flux_bfl(10, 0, mods=False)),  # some blocks only: HunyuanVideo too
    ],
)
def test_double_blocks_without_flux_evidence_is_unknown(tmp_path: Path, build) -> None:
    info = info_of(tmp_path, build())
    assert info.family is None
    assert "flux" in info.candidates


def test_metadata_decides_what_keys_cannot(tmp_path: Path) -> None:
    info = info_of(tmp_path, L.kohya(L.flux_bfl(mods=False)), {"ss_base_model_version": "flux1"})
    assert (info.family, str(info.family_source)) == ("flux", "metadata (ss_base_model_version)")
    info = info_of(tmp_path, L.kohya(L.ldm_unet("sdxl-base")), {"ss_base_model_version": "kolors"})
    assert info.family == "kolors"


def test_metadata_disagreeing_with_keys_is_noted(tmp_path: Path) -> None:
    info = info_of(tmp_path, L.kohya(L.unet_attn(L.SD1_UNET)), {"ss_base_model_version": "sdxl_base_v1-0"})
    assert info.family == "sd1"
    assert "metadata" in str(info.notes[0])


def test_cross_attention_width_only_counts_in_unets(tmp_path: Path) -> None:
    # attn2.to_k with 1024 (Cosmos, HunyuanDiT) or 2048 (LTX-Video) inputs outside a UNet
    for build, family in (
        (lambda: L.peft(LIN(D("CosmosTransformer3DModel"), r"attn2")), "cosmos"),
        (lambda: L.peft(LIN(D("LTXVideoTransformer3DModel"), r"attn2")), "ltxv"),
    ):
        assert info_of(tmp_path, build()).family == family


def test_text_encoder_only_lora_is_not_guessed(tmp_path: Path) -> None:
    info = info_of(tmp_path, L.kohya(L.clip_hf(768, 12), "lora_te1_"))
    assert info.family is None


def test_kohya_metadata(tmp_path: Path) -> None:
    tags = {"10_ohwx woman": {"ohwx woman": 20, "smile": 5, "outdoors": 7}, "reg": {"smile": 4}}
    md = {
        "ss_tag_frequency": json.dumps(tags),
        "ss_sd_model_name": "sd_xl_base_1.0.safetensors",
        "ss_base_model_version": "sdxl_base_v1-0",
        "ss_new_sd_model_hash": "31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5b",
        "ss_resolution": "(1024, 1024)",
        "ss_steps": "1500",
        "ss_network_dim": "32",
    }
    info = info_of(tmp_path, sdxl_kohya(), md)
    assert info.trigger_words[:3] == ["ohwx woman", "smile", "outdoors"]
    assert info.training["base_model"] == "sd_xl_base_1.0.safetensors"
    assert info.training["resolution"] == "(1024, 1024)"
    assert info.training["steps"] == "1500"
    assert info.training["base_model_hash_new"].startswith("31e35c80")
    assert info.ranks == [4]
    assert info.trains == {"diffusion model": len(L.ldm_unet("sdxl-base")), "text encoder 1": 72, "text encoder 2": 192}


def test_broken_tag_frequency_is_ignored(tmp_path: Path) -> None:
    info = info_of(tmp_path, sdxl_kohya(), {"ss_tag_frequency": "{not json"})
    assert info.trigger_words == []


# --- algorithms ---------------------------------------------------------------------------------

K = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k"
C = "lora_unet_input_blocks_1_0_in_layers_2"


@pytest.mark.parametrize(
    ("lay", "algorithm"),
    [
        ({K + ".lora_down.weight": ((4, 2048), "F16"), K + ".lora_up.weight": ((640, 4), "F16")}, "lora"),
        ({C + ".lora_down.weight": ((4, 320, 3, 3), "F16"), C + ".lora_up.weight": ((320, 4, 1, 1), "F16")}, "locon"),
        (
            {
                C + ".lora_down.weight": ((4, 320, 1, 1), "F16"),
                C + ".lora_mid.weight": ((4, 4, 3, 3), "F16"),
                C + ".lora_up.weight": ((320, 4, 1, 1), "F16"),
            },
            "locon",
        ),
        (
            {
                K + f".hada_{n}": (s, "F16")
                for n, s in (("w1_a", (640, 4)), ("w1_b", (4, 2048)), ("w2_a", (640, 4)), ("w2_b", (4, 2048)))
            },
            "loha",
        ),
        (
            {K + ".lokr_w1": ((8, 8), "F16"), K + ".lokr_w2_a": ((80, 4), "F16"), K + ".lokr_w2_b": ((4, 256), "F16")},
            "lokr",
        ),
        ({K + ".diff": ((640, 2048), "F16"), K + ".diff_b": ((640,), "F16")}, "full"),
        ({K + ".oft_blocks": ((4, 160, 160), "F16"), K + ".alpha": ((), "F16")}, "oft"),
        ({K + ".oft_blocks": ((2, 4, 160, 160), "F16"), K + ".rescale": ((640, 1), "F16")}, "boft"),
        (
            {
                K + f".{n}.weight": (s, "F16")
                for n, s in (("a1", (2048, 4)), ("a2", (4, 2048)), ("b1", (640, 4)), ("b2", (4, 2048)))
            },
            "glora",
        ),
    ],
)
def test_algorithms(tmp_path: Path, lay: Layout, algorithm: str) -> None:
    info = info_of(tmp_path, lay)
    assert info.algorithms == {algorithm: 1}
    assert info.kind == ("lora" if algorithm in ("lora", "locon") else "lycoris")


def test_dora_counts(tmp_path: Path) -> None:
    lay = {
        K + ".lora_down.weight": ((4, 2048), "F16"),
        K + ".lora_up.weight": ((640, 4), "F16"),
        K + ".dora_scale": ((640, 1), "F16"),
    }
    assert info_of(tmp_path, lay).dora == 1
    peft = "transformer.transformer_blocks.0.attn.to_q"  # PEFT's DoRA magnitude, as PEFT saves it
    lay = {
        peft + ".lora_A.weight": ((4, 3072), "BF16"),
        peft + ".lora_B.weight": ((3072, 4), "BF16"),
        peft + ".lora_magnitude_vector": ((3072,), "BF16"),
    }
    info = info_of(tmp_path, lay)
    assert (info.dora, info.other_keys) == (1, [])


def test_incomplete_pairs_are_not_targets() -> None:
    from sdmodel.formats.base import TensorInfo

    keys = parse(
        {
            K + ".lora_up.weight": TensorInfo(K + ".lora_up.weight", "F16", (640, 4)),
            "bundle_emb.x": TensorInfo("bundle_emb.x", "F16", (1,)),
        }
    )
    assert keys.targets == {}
    assert sorted(keys.other) == sorted([K + ".lora_up.weight", "bundle_emb.x"])
