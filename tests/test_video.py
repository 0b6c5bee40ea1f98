"""Video families, video VAEs and the 2025-2026 text encoders: every naming under every usual root,
negatives against the families each probe could misfire on, and the fixtures checked against the
reference converters (diffusers' single-file loaders)."""

from __future__ import annotations

import pytest

from sdmodel import registry
from sdmodel.formats import open_model
from sdmodel.formats.base import TensorInfo
from sdmodel.identify import identify
from sdmodel.registry import video
from tests.builders import Layout, renamed
from tests.families import FAMILY_FIXTURES, clip_l, t5xxl, vae_only
from tests.video_families import VIDEO_DIR, VIDEO_FIXTURES, edited, rooted, wan_vae_original
from tests.video_families import video as load

VIDEO_IDS = {f.id for f in video.FAMILIES}


def infos(lay: Layout) -> dict[str, TensorInfo]:
    return {k: TensorInfo(k, d, s) for k, (s, d) in lay.items()}


def answer(lay: Layout) -> tuple[str | None, str | None, str | None]:
    """(signature, family, variant) from names and shapes alone."""
    found = registry.match(infos(lay))
    if found is None:
        return None, None, None
    sig, root = found
    return sig.id, sig.family.id if sig.family else None, sig.variant(infos(lay), root).name


def _strip(lay: Layout) -> Layout:
    """The layout without whatever root the fixture put on it."""
    for prefix in ("model.diffusion_model.", "diffusion_model.", "transformer.", "model."):
        if all(k.startswith(prefix) for k in lay):
            return renamed(lay, lambda k, p=prefix: k[len(p) :])
    return lay


@pytest.mark.parametrize(
    ("family", "variant", "kind", "build"), VIDEO_FIXTURES, ids=lambda x: x if isinstance(x, str) else None
)
@pytest.mark.parametrize("root", ["", "model.diffusion_model.", "diffusion_model.", "model."])
def test_every_video_fixture_under_every_root(family, variant, kind, build, root):
    lay = _strip(build())
    if all(k.startswith("net.") for k in lay) and root:
        lay = renamed(lay, lambda k: k[len("net.") :])
    _, fam, var = answer(rooted(lay, root))
    assert (fam, var) == (family, variant)


@pytest.mark.parametrize(
    ("family", "variant", "kind", "build"), VIDEO_FIXTURES[:3], ids=lambda x: x if isinstance(x, str) else None
)
def test_video_identify_end_to_end(sparse, family, variant, kind, build):
    with open_model(sparse(build())) as src:
        ident = identify(src)
    assert (ident.kind, ident.family, ident.variant, ident.prediction) == (kind, family, variant, "flow")


def test_candidates_when_shapes_cannot_tell(sparse):
    """Wan 2.2 T2V 14B has Wan 2.1's names and shapes: the likelier one plus the other."""
    with open_model(sparse(load("wan2.1-t2v-14b.original"))) as src:
        ident = identify(src)
    assert (ident.variant, ident.candidates) == ("2.2-t2v-14b", ["2.1-t2v-14b"])
    assert registry.label(ident.family, ident.variant) == "Wan 2.2-t2v-14b"


def test_image_fixtures_are_never_video():
    for family, _, _, build in FAMILY_FIXTURES:
        if family not in VIDEO_IDS:
            assert answer(build())[1] not in VIDEO_IDS, family


def test_hunyuan_image_is_not_hunyuan_video():
    """HunyuanImage 2.1 has HunyuanVideo's blocks with 2-D patches: not a video model."""
    lay = load("hunyuan_video-t2v.original")
    lay["img_in.proj.weight"] = ((3072, 64, 1, 1), "BF16")
    assert answer(lay)[1] != "hunyuan_video"


def test_pixart_is_not_ltxv():
    """PixArt's diffusers names share LTX's adaln_single but patch with pos_embed.proj."""
    lay = {
        "adaln_single.emb.timestep_embedder.linear_1.bias": ((1152,), "F16"),
        "pos_embed.proj.weight": ((1152, 4, 2, 2), "F16"),
        "transformer_blocks.0.attn2.to_k.weight": ((1152, 4096), "F16"),
    }
    assert answer(lay)[1] != "ltxv"


def test_sd2_unet_is_not_svd_and_svd_is_not_sd2():
    sd2_unet = next(b for f, v, _, b in FAMILY_FIXTURES if (f, v) == ("sd2", "base"))()
    assert answer(sd2_unet)[1] == "sd2"
    svd_unet = next(b for f, _, _, b in VIDEO_FIXTURES if f == "svd")()
    assert answer(svd_unet)[1] == "svd"


# --- fixtures are the real names: the reference converters turn them into diffusers' own ---------


@pytest.mark.parametrize(
    ("name", "converter"),
    [
        ("wan2.1-i2v-14b", "convert_wan_transformer_to_diffusers"),
        ("wan2.1-vace-14b", "convert_wan_transformer_to_diffusers"),
        ("wan2.2-animate-14b", "convert_wan_transformer_to_diffusers"),
        ("hunyuan_video-t2v", "convert_hunyuan_video_transformer_to_diffusers"),
        ("ltxv-2b", "convert_ltx_transformer_checkpoint_to_diffusers"),
        ("ltx2", "convert_ltx2_transformer_to_diffusers"),
    ],
)
def test_original_layouts_convert_to_the_diffusers_model(name, converter):
    torch = pytest.importorskip("torch")
    sfu = pytest.importorskip("diffusers.loaders.single_file_utils")
    original = {k: torch.empty(s, device="meta") for k, (s, _) in load(f"{name}.original").items()}
    converted = getattr(sfu, converter)(original)
    want = {k: s for k, (s, _) in load(f"{name}.diffusers").items()}
    assert {k: tuple(v.shape) for k, v in converted.items()} == want


# --- VAEs ---------------------------------------------------------------------------------------

VAE_CASES = [
    ("wan2.1-vae.diffusers", "vae_wan_diffusers", None, "wan", ["qwen_image"]),
    ("wan2.2-vae.diffusers", "vae_wan2.2_diffusers", "wan", "wan2.2", []),
    ("hunyuan_video-vae.diffusers", "vae_hunyuan_video", "hunyuan_video", "hunyuan_video", []),
    ("hunyuan_video-1.5-vae.diffusers", "vae_hunyuan_video_1.5", "hunyuan_video", "hunyuan_video_1.5", []),
    ("ltxv-vae.diffusers", "vae_ltxv", "ltxv", "ltxv", []),
    ("mochi-vae.diffusers", "vae_mochi", "mochi", "mochi", []),
    ("cogvideox-vae.diffusers", "vae_cogvideox", "cogvideox", "cogvideox", []),
    ("ltx2-vae.diffusers", "vae_ltxv", "ltxv", "ltxv", []),
    ("ltx2-audio-vae.diffusers", "vae_ltx2_audio", "ltxv", "ltx2_audio", []),
    ("cosmos-vae.diffusers", "vae_cosmos", "cosmos", "cosmos", []),
]


@pytest.mark.parametrize(("name", "sig", "family", "variant", "candidates"), VAE_CASES)
def test_video_vaes(sparse, name, sig, family, variant, candidates):
    with open_model(sparse(load(name))) as src:
        ident = identify(src)
    assert (ident.kind, ident.signature, ident.family, ident.variant) == ("vae", sig, family, variant)
    assert ident.candidates == candidates
    assert ident.prediction == "unknown"


def test_wan_vae_original_names():
    assert answer(wan_vae_original())[0::2] == ("vae_wan", "wan")
    assert answer(wan_vae_original("wan2.2-vae.diffusers"))[0::2] == ("vae_wan2.2", "wan2.2")


def test_stable_cascade_stage_a():
    lay = {
        "vquantizer.codebook.weight": ((8192, 4), "F32"),
        "down.0.weight": ((384, 12, 2, 2), "F32"),
        "up.1.weight": ((384, 12, 1, 1), "F32"),
    }
    assert answer(lay)[0::2] == ("vae_stable_cascade", "stable_cascade")


def test_image_vaes_by_latent_channels():
    four = vae_only()
    sixteen = edited(four, {"decoder.conv_in.weight": ((512, 16, 3, 3), "F32")})
    thirty_two = edited(four, {"decoder.conv_in.weight": ((512, 32, 3, 3), "F32")})
    assert [answer(x)[2] for x in (four, sixteen, thirty_two)] == ["4ch", "16ch", "32ch"]


# --- text encoders ---------------------------------------------------------------------------------

LLM_CASES = [
    ("qwen25vl_7b.transformers", "qwen25vl_7b"),
    ("qwen3_4b.transformers", "qwen3_4b"),
    ("qwen3_8b.transformers", "qwen3_8b"),
    ("qwen3_0.6b.transformers", "qwen3_0.6b"),
    ("llama3_8b.transformers", "llama3_8b"),
    ("gemma2_2b.transformers", "gemma2_2b"),
    ("gemma3_4b.transformers", "gemma3_4b"),
    ("mistral_small.transformers", "mistral_small"),
    ("umt5xxl.transformers", "umt5xxl"),
    ("t5xxl.transformers", "t5xxl"),
]


@pytest.mark.parametrize(("name", "variant"), LLM_CASES)
@pytest.mark.parametrize("root", ["", "model.", "language_model.model."])
def test_text_encoders(name, variant, root):
    lay = load(name)
    if root and not name.startswith(("t5", "umt5")):
        bare = renamed(lay, lambda k: k.removeprefix("model.language_model.").removeprefix("model."))
        lay = rooted(bare, root)
    sig, family, var = answer(lay)
    assert (family, var) == (None, variant), sig
    assert registry.signature(sig).network == "text_encoder"  # type: ignore[union-attr]


def test_umt5_is_never_t5xxl_and_back():
    """Same names and q/k/v shapes: UMT5 has a relative attention bias in every block."""
    assert answer(load("umt5xxl.transformers"))[2] == "umt5xxl"
    assert answer(t5xxl())[2] == "t5xxl"
    no_bias = {k: v for k, v in load("umt5xxl.transformers").items() if "relative_attention_bias" not in k}
    assert answer(no_bias)[0::2] == ("umt5xxl_vocab", "umt5xxl")  # the vocabulary tells
    t5_with_bias = t5xxl() | {"encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight": ((32, 64), "F16")}
    assert answer(t5_with_bias)[2] == "t5xxl"


def test_llava_llama_is_llama3_8b():
    lay = load("llama3_8b.transformers")
    lay["model.embed_tokens.weight"] = ((128320, 4096), "BF16")
    assert answer(lay)[0::2] == ("llama3_8b_llava", "llama3_8b")


def test_clip_l_as_saved_by_transformers_5():
    lay = renamed(clip_l(), lambda k: k.removeprefix("text_model."))
    assert answer(lay)[0::2] == ("clip_l_tf5", "clip_l")
    assert answer(clip_l())[0::2] == ("clip_l", "clip_l")


def _t5(width: int, vocab: int, bias_in_every_block: bool) -> Layout:
    """A T5-style encoder: 24 blocks of ``width``; UMT5 has a relative attention bias in every block."""
    lay: Layout = {"shared.weight": ((vocab, width), "F32")}
    for b in range(24):
        attn = f"encoder.block.{b}.layer.0.SelfAttention."
        lay[attn + "q.weight"] = ((width, width), "F32")
        if b == 0 or bias_in_every_block:
            lay[attn + "relative_attention_bias.weight"] = ((32, 32), "F32")
        lay[f"encoder.block.{b}.layer.1.DenseReluDense.wi_1.weight"] = ((5120, width), "F32")
    return lay


def _hydit_bert() -> Layout:
    """HunyuanDiT's BERT as ComfyUI names it (comfy/text_encoders/bert.py keeps ``bert.``)."""
    lay: Layout = {"bert.embeddings.word_embeddings.weight": ((47020, 1024), "F16")}
    for i in range(24):
        lay[f"bert.encoder.layer.{i}.attention.self.query.weight"] = ((1024, 1024), "F16")
    return lay


def _chatglm3() -> Layout:
    lay: Layout = {"transformer.embedding.word_embeddings.weight": ((65024, 4096), "F16")}
    for i in range(28):
        lay[f"transformer.encoder.layers.{i}.self_attention.query_key_value.weight"] = ((4608, 4096), "F16")
    lay["transformer.output_layer.weight"] = ((65024, 4096), "F16")
    return lay


IMAGE_TE_CASES = [
    (lambda: _t5(2048, 32128, True), "pile_t5xl", ()),
    (lambda: _t5(2048, 250112, False), "mt5xl", ()),
    (_hydit_bert, "hydit_clip", ()),
    (lambda: renamed(_hydit_bert(), lambda k: k.removeprefix("bert.")), "hydit_clip", ()),
    (_chatglm3, "chatglm3_6b", ("chatglm2_6b",)),
    (lambda: renamed(_chatglm3(), lambda k: k.removeprefix("transformer.")), "chatglm3_6b", ("chatglm2_6b",)),
]


@pytest.mark.parametrize(("build", "variant", "candidates"), IMAGE_TE_CASES)
def test_image_family_text_encoders(sparse, build, variant, candidates):
    """AuraFlow's Pile-T5-XL, HunyuanDiT's mT5-XL and BERT, Kolors' ChatGLM3-6B."""
    with open_model(sparse(build())) as src:
        ident = identify(src)
    assert (ident.kind, ident.family, ident.variant) == ("text_encoder", None, variant)
    assert tuple(ident.candidates) == candidates


def test_t5_xl_is_pile_t5_only_with_a_bias_in_every_block():
    """T5 v1.1-XL / Flan-T5-XL share Pile-T5-XL's width and vocabulary but not its per-block bias:
    they stay unknown rather than named as AuraFlow's encoder; wider T5s are never Pile-T5."""
    assert answer(_t5(2048, 32128, False))[0] is None
    assert answer(_t5(4096, 32128, True))[2] != "pile_t5xl"


def test_what_image_families_need_is_identifiable():
    answers = {v for s in registry.SIGNATURES for v in (s.default_variant, *(x.name for x in s.variants))}
    for fam in registry.FAMILIES:
        assert set(fam.text_encoders) <= answers, fam.id


def test_text_encoders_are_not_diffusion_models():
    for name, _ in LLM_CASES:
        sig = registry.signature(answer(load(name))[0])
        assert sig is not None and sig.network == "text_encoder", name


def test_wan_diffusers_pipeline_folder(tmp_path):
    """A Wan 2.2 pipeline folder (two transformers, Wan VAE): the transformer tells the family."""
    import json

    from tests.builders import write_sparse_safetensors

    index = {"_class_name": "WanPipeline", "transformer": ["diffusers", "WanTransformer3DModel"]}
    index |= {"transformer_2": ["diffusers", "WanTransformer3DModel"], "vae": ["diffusers", "AutoencoderKLWan"]}
    (tmp_path / "model_index.json").write_text(json.dumps(index))
    for comp, name in (
        ("transformer", "wan2.2-i2v-14b.diffusers"),
        ("transformer_2", "wan2.2-i2v-14b.diffusers"),
        ("vae", "wan2.1-vae.diffusers"),
    ):
        (tmp_path / comp).mkdir()
        (tmp_path / comp / "config.json").write_text(json.dumps({"_class_name": index[comp][1]}))
        write_sparse_safetensors(tmp_path / comp / "diffusion_pytorch_model.safetensors", load(name))
    with open_model(tmp_path) as src:
        ident = identify(src)
        assert src.extras["family"] == "wan"
    assert (ident.family, ident.variant) == ("wan", "2.2-i2v-14b")


def test_ltxv_checkpoint_with_its_vae(sparse):
    """LTX-Video single files carry the VAE under ``vae.``: a whole checkpoint."""
    lay = rooted(load("ltxv-2b.original"), "model.diffusion_model.") | rooted(load("ltxv-vae.diffusers"), "vae.")
    with open_model(sparse(lay)) as src:
        ident = identify(src)
    assert (ident.kind, ident.family, ident.variant) == ("checkpoint", "ltxv", "0.9-2b")


# --- ControlNets and adapters ---------------------------------------------------------------------

ADAPTER_CASES = [
    ("flux_xlabs", "controlnet_flux_xlabs", "controlnet", "flux", "xlabs"),
    ("flux_union", "controlnet_flux", "controlnet", "flux", "union"),
    ("sd3", "controlnet_sd3", "controlnet", "sd3", "base"),
    ("sdxl_union", "controlnet_sdxl_diffusers", "controlnet", "sdxl", "union"),
    ("ip_sd1", "ip_adapter_sd1", "ip_adapter", "sd1", "base"),
    ("ip_sd1_plus", "ip_adapter_sd1", "ip_adapter", "sd1", "plus"),
    ("ip_sd1_faceid", "ip_adapter_sd1", "ip_adapter", "sd1", "faceid"),
    ("ip_sdxl", "ip_adapter_sdxl", "ip_adapter", "sdxl", "base"),
    ("ip_flux", "ip_adapter_flux_xlabs", "ip_adapter", "flux", "xlabs"),
]


def _adapter(name: str) -> Layout:
    from tests import video_families as vf

    return {
        "flux_xlabs": vf.flux_controlnet_xlabs,
        "flux_union": lambda: load("flux-controlnet-union.diffusers"),
        "sd3": lambda: load("sd3-controlnet.diffusers"),
        "sdxl_union": lambda: load("sdxl-controlnet-union.diffusers"),
        "ip_sd1": vf.ip_adapter,
        "ip_sd1_plus": lambda: vf.ip_adapter(kind="plus"),
        "ip_sd1_faceid": lambda: vf.ip_adapter(kind="faceid"),
        "ip_sdxl": lambda: vf.ip_adapter(2048, 640, 1280),
        "ip_flux": vf.ip_adapter_flux_xlabs,
    }[name]()


@pytest.mark.parametrize(("name", "sig", "kind", "family", "variant"), ADAPTER_CASES)
def test_controlnets_and_adapters(sparse, name, sig, kind, family, variant):
    with open_model(sparse(_adapter(name))) as src:
        ident = identify(src)
    assert (ident.signature, ident.kind, ident.family, ident.variant) == (sig, kind, family, variant)


def test_flux_controlnet_is_not_flux_and_flux_is_not_a_controlnet():
    from tests.families import flux

    assert answer(flux())[0] == "flux"
    assert answer(_adapter("flux_xlabs"))[0] == "controlnet_flux_xlabs"


def test_plain_sdxl_controlnet_is_not_union():
    lay = {k: v for k, v in _adapter("sdxl_union").items() if not k.startswith("control_add_embedding.")}
    assert answer(lay)[0::2] == ("controlnet_sdxl_diffusers", "base")


def test_info_json_lists_candidates(sparse):
    from sdmodel.inspection import inspect

    report = inspect(sparse(load("wan2.1-vae.diffusers")))
    assert report.to_dict()["candidates"] == ["qwen_image"]


NEGATIVE_DITS = sorted(p.name.removesuffix(".json.gz") for p in VIDEO_DIR.glob("negative-*.json.gz"))


@pytest.mark.parametrize("name", NEGATIVE_DITS)
@pytest.mark.parametrize("root", ["", "model.diffusion_model.", "transformer."])
def test_other_dits_are_not_video(name, root):
    """Image DiTs in diffusers names never answer a video family (nor a VAE or text encoder)."""
    sig, family, _ = answer(rooted(load(name), root))
    assert family not in VIDEO_IDS, (name, sig)
    assert sig is None or registry.signature(sig).network == "diffusion", (name, sig)  # type: ignore[union-attr]


def test_what_video_families_need_is_identifiable():
    """Every text encoder and VAE a video family names is a variant some signature answers."""
    answers = {v for s in registry.SIGNATURES for v in (s.default_variant, *(x.name for x in s.variants))}
    for fam in video.FAMILIES:
        assert set(fam.text_encoders) <= answers, fam.id
        assert fam.vae is None or fam.vae in answers, fam.id


@pytest.mark.parametrize(
    ("name", "root", "variant"),
    [
        ("clip_vision_h.transformers", "", "clip_vision_h"),
        ("siglip_so400m.transformers", "", "siglip_so400m"),
        ("siglip_so400m.transformers", "vision_model.", "siglip_so400m"),
    ],
)
def test_image_encoders(sparse, name, root, variant):
    with open_model(sparse(rooted(load(name), root))) as src:
        ident = identify(src)
    assert (ident.kind, ident.family, ident.variant, ident.prediction) == ("image_encoder", None, variant, "unknown")


def test_clip_vision_is_not_a_text_encoder_and_back():
    assert registry.signature(answer(load("clip_vision_h.transformers"))[0]).network == "image_encoder"  # type: ignore[union-attr]
    assert registry.signature(answer(clip_l())[0]).network == "text_encoder"  # type: ignore[union-attr]


def test_flux2_pruned_mistral_is_still_mistral_small():
    """ComfyUI's FLUX.2 encoder file keeps layers 0-29 of the 40 (comfy/sd.py MISTRAL3_24B_PRUNED_FLUX2)."""
    lay = load("mistral_small.transformers")
    pruned = {k: v for k, v in lay.items() if not any(f"layers.{i}." in k for i in range(30, 40))}
    assert len(pruned) < len(lay)
    assert answer(pruned)[2] == "mistral_small"
