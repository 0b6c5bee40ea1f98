"""Which GGUF type each tensor gets: convert.py + city96's patched llama-quantize, on real layouts."""

from __future__ import annotations

import pytest

from sdmodel.errors import ConversionError
from sdmodel.quant.gguf_policy import FILE_TYPES, GGUF_QUANTS, choose_types, detect_architecture, strip_prefix
from tests.builders import layout
from tests.quant_layouts import flux_layout, wan_layout


def _types(lay, quant):
    names = strip_prefix(list(lay))
    arch = detect_architecture(list(names.values()))
    return arch, {c.name: c for c in choose_types(arch, lay, quant)}


def test_flux_q4_k_s() -> None:
    arch, got = _types(flux_layout(2, 2), "Q4_K_S")
    assert arch.name == "flux"
    assert got["double_blocks.0.img_attn.qkv.weight"].qtype == "Q4_K"
    assert got["double_blocks.1.txt_mlp.2.weight"].qtype == "Q4_K"
    assert got["single_blocks.1.linear2.weight"].qtype == "Q4_K"
    assert got["double_blocks.0.img_attn.norm.query_norm.scale"].qtype == "F32"  # 1-D
    assert got["double_blocks.0.img_attn.qkv.bias"].qtype == "F32"
    for kept in ("img_in.weight", "txt_in.weight", "time_in.in_layer.weight", "final_layer.linear.weight"):
        assert got[kept].qtype == "BF16", kept  # the patch's Flux rules: stays as converted
        assert "flux rules" in str(got[kept].reason)
    c = got["single_blocks.0.linear1.weight"]
    assert c.shape == (21504, 3072) and c.nbytes == 21504 * 3072 // 256 * 144


def test_flux_mixes() -> None:
    _, m = _types(flux_layout(1, 1), "Q4_K_M")
    assert m["double_blocks.0.img_attn.qkv.weight"].qtype == "Q5_K"  # fused qkv
    _, m = _types(flux_layout(1, 1), "Q5_K_M")
    assert m["double_blocks.0.img_attn.qkv.weight"].qtype == "Q6_K"
    _, m = _types(flux_layout(1, 1), "Q3_K_M")
    assert m["double_blocks.0.img_attn.qkv.weight"].qtype == "Q4_K"
    _, m = _types(flux_layout(1, 1), "Q8_0")
    assert {c.qtype for c in m.values()} == {"Q8_0", "F32", "BF16"}


def test_float_outputs_follow_convert_py() -> None:
    _, m = _types(flux_layout(1, 1), "F16")
    assert m["double_blocks.0.img_attn.qkv.weight"].qtype == "F16"
    assert m["img_in.weight"].qtype == "F16"
    assert m["img_in.bias"].qtype == "F32"
    _, m = _types(flux_layout(1, 1, dtype="F16"), "BF16")
    assert m["img_in.bias"].qtype == "BF16"  # an F16 source keeps nothing in F32 (convert.py)


def test_wan_attention_v_counter_ffn_and_5d() -> None:
    arch, got = _types(wan_layout(blocks=3, dim=512, ffn=1024), "Q4_K_S")
    assert arch.name == "wan"
    patch = got["patch_embedding.weight"]
    assert patch.qtype == "F32" and patch.shape == (512, 16, 1, 2, 2)  # as fix_5d_tensors.py
    # ".v.weight": the first four (by name) Q5_K, then Q4_K
    v = {n: c.qtype for n, c in got.items() if n.endswith(".v.weight")}
    assert [v[n] for n in sorted(v)] == ["Q5_K"] * 4 + ["Q4_K"] * 2
    assert got["blocks.0.ffn.2.weight"].qtype == "Q5_K"  # feed-forward down, Q4_K_S
    assert got["blocks.0.ffn.0.weight"].qtype == "Q4_K"
    assert got["blocks.0.modulation"].qtype == "F32" and got["blocks.0.modulation"].shape == (1, 6, 512)
    for kept in ("text_embedding.0.weight", "time_projection.1.weight", "head.head.weight"):
        assert got[kept].qtype == "BF16"


def test_sdxl_rows_reshaped_with_orig_shape() -> None:
    lay = layout("sdxl-base")
    names = strip_prefix(list(lay))
    assert all(not n.startswith(("first_stage_model.", "conditioner.")) for n in names.values())
    arch, got = _types(lay, "Q4_K_S")
    assert arch.name == "sdxl"
    conv = got["input_blocks.1.0.in_layers.2.weight"]
    assert conv.orig_shape == (320, 320, 3, 3) and conv.shape == (3600, 256) and conv.qtype == "Q4_K"
    assert got["input_blocks.0.0.weight"].qtype in ("F16", "F32", "BF16")  # conv_in kept (SDXL rules)
    assert got["out.2.weight"].qtype != "Q4_K"
    assert got["time_embed.0.weight"].qtype != "Q4_K"


def test_row_fallback_and_legacy_ffn_rule() -> None:
    lay = flux_layout(1, 1)
    lay["double_blocks.0.extra.weight"] = ((64, 320), "BF16")
    _, got = _types(lay, "Q4_K_S")
    c = got["double_blocks.0.extra.weight"]
    assert c.qtype == "F16" and "not a multiple of 256" in str(c.reason)
    _, got = _types(wan_layout(1, 512, 1024), "Q4_0")
    assert got["blocks.0.ffn.2.weight"].qtype == "Q4_1"
    assert got["blocks.0.ffn.0.weight"].qtype == "Q4_0"


def test_refusals() -> None:
    with pytest.raises(ConversionError, match="diffusers tensor names"):
        detect_architecture(["transformer_blocks.0.attn.norm_added_k.weight", "x_embedder.weight"])
    with pytest.raises(ConversionError, match="ComfyUI-GGUF cannot load"):
        detect_architecture(["text_model.encoder.layers.0.mlp.fc1.weight"])
    arch = detect_architecture(list(flux_layout(1, 1)))
    with pytest.raises(ConversionError, match="unknown GGUF quantization"):
        choose_types(arch, flux_layout(1, 1), "Q7_K")  # type: ignore[arg-type]
    with pytest.raises(ConversionError, match="127 characters"):
        choose_types(arch, {"double_blocks.0.img_attn.qkv.weight" + "x" * 120: ((8, 256), "F32")}, "Q8_0")


def test_every_quant_has_a_file_type() -> None:
    assert set(GGUF_QUANTS) == set(FILE_TYPES)
    assert FILE_TYPES["Q4_K_S"] == ("Q4_K", 14)
