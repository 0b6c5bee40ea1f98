"""Identification of every family and variant from names and shapes (sparse safetensors files
with the real names and shapes)."""

from __future__ import annotations

import pytest

from sdmodel import registry
from sdmodel.formats import open_model
from sdmodel.identify import identify
from tests import families as fam
from tests.builders import with_dtype, with_ema

CASES = [
    # (layout builder, kind, family, variant, a1111 config)
    (fam.sd1, "checkpoint", "sd1", "base", "v1-inference.yaml"),
    (lambda: with_ema(fam.sd1()), "checkpoint", "sd1", "base", "v1-inference.yaml"),
    (lambda: with_dtype(fam.sd1(), "F16"), "checkpoint", "sd1", "base", "v1-inference.yaml"),
    (fam.sd1_novelai, "checkpoint", "sd1", "base", "v1-inference.yaml"),
    (fam.sd1_inpaint, "checkpoint", "sd1", "inpaint", "v1-inpainting-inference.yaml"),
    (fam.sd1_pix2pix, "checkpoint", "sd1", "pix2pix", "instruct-pix2pix.yaml"),
    (fam.sd2, "checkpoint", "sd2", "base", None),
    (fam.sd2_depth, "checkpoint", "sd2", "depth", "v2-midas-inference.yaml"),
    (lambda: fam.sd2_unclip(768), "checkpoint", "sd2", "unclip", "v2-1-stable-unclip-l-inference.yaml"),
    (lambda: fam.sd2_unclip(1024), "checkpoint", "sd2", "unclip", "v2-1-stable-unclip-h-inference.yaml"),
    (fam.sdxl, "checkpoint", "sdxl", "base", "sd_xl_base.yaml"),
    (fam.sdxl_refiner, "checkpoint", "sdxl_refiner", "base", "sd_xl_refiner.yaml"),
    (fam.sd3, "checkpoint", "sd3", "medium", None),
    (lambda: fam.flux(dev=True), "unet", "flux", "dev", None),
    (lambda: fam.flux(dev=False), "unet", "flux", "schnell", None),
    (lambda: fam.unet_only(fam.sd1()), "unet", "sd1", "base", "v1-inference.yaml"),
    (lambda: fam.unet_only(fam.sdxl()), "unet", "sdxl", "base", "sd_xl_base.yaml"),
    (fam.controlnet, "controlnet", "sd1", "base", None),
    (lambda: fam.controlnet(prefix=""), "controlnet", "sd1", "base", None),
    (lambda: fam.controlnet(fam.sd2()), "controlnet", "sd2", "base", None),
    (lambda: fam.controlnet(fam.sdxl()), "controlnet", "sdxl", "base", None),
    (lambda: fam.t2i_adapter(192), "t2i_adapter", "sd1", "base", None),
    (lambda: fam.t2i_adapter(768), "t2i_adapter", "sdxl", "base", None),
    (fam.vae_only, "vae", None, "4ch", None),
    (fam.clip_l, "text_encoder", None, "clip_l", None),
    (lambda: fam.openclip("", 1024, 24), "text_encoder", None, "openclip_h", None),
    (lambda: fam.openclip("", 1280, 32), "text_encoder", None, "clip_g", None),
    (fam.t5xxl, "text_encoder", None, "t5xxl", None),
    (lambda: fam.lora_kohya(768), "lora", "sd1", None, None),
    (lambda: fam.lora_kohya(1024), "lora", "sd2", None, None),
    (lambda: fam.lora_kohya(2048, te=("lora_te1_", "lora_te2_")), "lora", "sdxl", None, None),
    (lambda: fam.lora_peft(768), "lora", "sd1", None, None),
    (lambda: fam.loha(1024), "lycoris", "sd2", None, None),
    (fam.lokr, "lycoris", None, None, None),  # a text-encoder-only LyCORIS: lora_te1_ is SDXL, SD3 or Flux
    (lambda: fam.embedding(768), "embedding", "sd1", None, None),
    (lambda: fam.embedding(1024), "embedding", "sd2", None, None),
    (fam.embedding_sdxl, "embedding", "sdxl", None, None),
]


@pytest.mark.parametrize(("build", "kind", "family", "variant", "config"), CASES)
def test_identifies(sparse, build, kind, family, variant, config):
    with open_model(sparse(build())) as src:
        ident = identify(src)
    assert (ident.kind, ident.family, ident.variant) == (kind, family, variant)
    assert ident.a1111_config == config


def test_vae_16_channels(sparse):
    lay = {"encoder.conv_in.weight": ((128, 3, 3, 3), "F32"), "decoder.conv_in.weight": ((512, 16, 3, 3), "F32")}
    with open_model(sparse(lay)) as src:
        ident = identify(src)
    assert (ident.kind, ident.variant) == ("vae", "16ch")


def test_unknown_file(sparse):
    with open_model(sparse({"foo.weight": ((3, 3), "F32")})) as src:
        assert identify(src).kind == "unknown"


@pytest.mark.parametrize(
    ("name", "metadata", "extra", "expected", "source"),
    [
        ("model.safetensors", {}, {}, "unknown", None),
        ("model.safetensors", {"modelspec.prediction_type": "v"}, {}, "v", "modelspec.prediction_type metadata"),
        ("model.safetensors", {}, {"v_pred": ((), "F32")}, "v", "v_pred marker tensor"),
        ("sd21-768-v-ema.safetensors", {}, {}, "v", "file name"),
        ("model.safetensors", {"modelspec.prediction_type": "epsilon"}, {}, "epsilon", None),
    ],
)
def test_prediction_hints(sparse, name, metadata, extra, expected, source):
    with open_model(sparse(fam.sd2() | extra, name=name, metadata=metadata)) as src:
        ident = identify(src)
    assert ident.prediction == expected
    if source:
        assert str(ident.prediction_source) == source
    if expected == "v":
        assert ident.a1111_config == "v2-inference-v.yaml"
        assert ident.modelspec_architecture == "stable-diffusion-v2-768-v"


@pytest.mark.parametrize(("param", "expected"), [("v", "v"), ("eps", "epsilon"), (None, "epsilon")])
def test_prediction_from_sidecar_yaml(sparse, tmp_path, param, expected):
    path = sparse(fam.sd2(), name="sd2model.safetensors")
    params = f'    parameterization: "{param}"\n' if param else ""
    (tmp_path / "sd2model.yaml").write_text(
        f"model:\n  target: ldm.models.diffusion.ddpm.LatentDiffusion\n  params:\n{params}    linear_start: 0.00085\n"
    )
    with open_model(path) as src:
        ident = identify(src)
    assert ident.prediction == expected
    assert str(ident.prediction_source) == "sidecar sd2model.yaml"


def test_flow_families_need_no_hint(sparse):
    with open_model(sparse(fam.sd3())) as src:
        assert identify(src).prediction == "flow"


def test_lora_family_from_metadata(sparse):
    lay = {"lora_unet_foo.lora_down.weight": ((4, 10), "F16"), "lora_unet_foo.lora_up.weight": ((10, 4), "F16")}
    with open_model(sparse(lay, metadata={"ss_base_model_version": "sdxl_base_v1-0"})) as src:
        ident = identify(src)
    assert (ident.kind, ident.family) == ("lora", "sdxl")
    assert ident.modelspec_architecture == "stable-diffusion-xl-v1-base/lora"


def test_registry_is_data():
    ids = [s.id for s in registry.SIGNATURES]
    assert len(ids) == len(set(ids))
    assert "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight" in registry.probe_suffixes()


def test_prediction_from_diffusers_scheduler_config():
    from sdmodel.formats.base import DictSource
    from sdmodel.identify import prediction_hint

    assert prediction_hint({}, {}, None, {"prediction_type": "v_prediction"}) == ("v", "diffusers scheduler config")
    src = DictSource({})
    src.extras["prediction_type"] = "epsilon"
    assert prediction_hint(src.tensors, src.metadata, None, src.extras)[0] == "epsilon"
