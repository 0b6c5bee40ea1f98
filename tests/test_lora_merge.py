"""Merged weights equal the reference computation in torch (kohya/ComfyUI LoRA scaling, LyCORIS
LoHa/LoKr/DoRA) or PEFT's own merge (PEFT DoRA), through the plan step and the streaming engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from sdmodel.engine import execute
from sdmodel.errors import ConversionError
from sdmodel.formats import open_model
from sdmodel.lora.keys import parse
from sdmodel.lora.merge import LoraSpec, apply_loras
from sdmodel.plan import initial_plan

rng = np.random.default_rng(0)


def r(*shape: int, dtype=np.float32) -> np.ndarray:
    return (0.1 * rng.standard_normal(shape)).astype(dtype)


def t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.float32))


def merge(tmp_path: Path, model: dict[str, np.ndarray], loras: list[tuple], family=None, **kw):
    mpath = tmp_path / "model.safetensors"
    save_file(model, str(mpath))
    sources = []
    for i, (lora, weight, *metadata) in enumerate(loras):  # (tensors, weight[, file metadata])
        lpath = tmp_path / f"lora{i}.safetensors"
        save_file(lora, str(lpath), metadata=metadata[0] if metadata else None)
        sources.append((open_model(lpath), weight))
    out = tmp_path / "out.safetensors"
    with open_model(mpath) as src:
        plan = initial_plan(src)
        apply_loras(plan, sources, family, **kw)
        execute(plan, out, fmt="safetensors", overwrite=True)
    for s, _w in sources:
        s.close()
    return load_file(str(out)), plan


KEY = "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"
STEM = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k"
CONV = "model.diffusion_model.input_blocks.1.0.in_layers.2.weight"
CSTEM = "lora_unet_input_blocks_1_0_in_layers_2"


def test_kohya_lora_alpha_over_rank(tmp_path: Path) -> None:
    w = r(64, 32, dtype=np.float16)
    up, down = r(64, 4), r(4, 32)
    lora = {STEM + ".lora_up.weight": up, STEM + ".lora_down.weight": down, STEM + ".alpha": np.array(2.0, np.float32)}
    out, plan = merge(tmp_path, {KEY: w, "other.weight": r(3)}, [(lora, 0.8)])
    want = (t(w) + 0.8 * (2.0 / 4) * (t(up) @ t(down))).to(torch.float16)
    assert out[KEY].dtype == np.float16
    np.testing.assert_array_equal(out[KEY], want.numpy())
    assert "1 of 1 targets merged" in str(plan.notes[0])
    assert next(s for s in plan.steps if s.out == KEY).action == "fix"


def test_two_loras_in_order_and_peft_without_alpha(tmp_path: Path) -> None:
    w = r(64, 32)
    a = {STEM + ".lora_up.weight": r(64, 8), STEM + ".lora_down.weight": r(8, 32)}
    peft_stem = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"
    b = {peft_stem + ".lora_B.weight": r(64, 2), peft_stem + ".lora_A.weight": r(2, 32)}
    # SD-shaped model: the diffusers name reaches the LDM key through the UNet table (family sdxl)
    out, _ = merge(tmp_path, {KEY: w}, [(a, 1.0), (b, -0.5)], family="sdxl")
    ref = t(w) + t(a[STEM + ".lora_up.weight"]) @ t(a[STEM + ".lora_down.weight"])
    ref = ref - 0.5 * (t(b[peft_stem + ".lora_B.weight"]) @ t(b[peft_stem + ".lora_A.weight"]))
    np.testing.assert_allclose(out[KEY], ref.numpy(), rtol=1e-6, atol=1e-7)


def test_locon_conv_and_tucker_mid(tmp_path: Path) -> None:
    w = r(16, 8, 3, 3)
    up, down = r(16, 4, 1, 1), r(4, 8, 3, 3)
    lora = {
        CSTEM + ".lora_up.weight": up,
        CSTEM + ".lora_down.weight": down,
        CSTEM + ".alpha": np.array(8.0, np.float32),
    }
    out, _ = merge(tmp_path, {CONV: w}, [(lora, 1.0)])
    ref = t(w) + 2.0 * (t(up).flatten(1) @ t(down).flatten(1)).reshape(w.shape)
    np.testing.assert_allclose(out[CONV], ref.numpy(), rtol=1e-5, atol=1e-6)
    # Tucker: down [r, in, 1, 1], mid [r, r, 3, 3], up [out, r, 1, 1], as ComfyUI's LoRA adapter computes it
    up, down, mid = r(16, 4, 1, 1), r(4, 8, 1, 1), r(4, 4, 3, 3)
    lora = {CSTEM + ".lora_up.weight": up, CSTEM + ".lora_down.weight": down, CSTEM + ".lora_mid.weight": mid}
    out, _ = merge(tmp_path, {CONV: w}, [(lora, 1.0)])
    m2 = t(down)
    m2 = torch.mm(m2.transpose(0, 1).flatten(1), t(mid).transpose(0, 1).flatten(1)).reshape(8, 4, 3, 3).transpose(0, 1)
    ref = t(w) + torch.mm(t(up).flatten(1), m2.flatten(1)).reshape(w.shape)
    np.testing.assert_allclose(out[CONV], ref.numpy(), rtol=1e-5, atol=1e-6)


def test_loha(tmp_path: Path) -> None:
    w = r(64, 32)
    p = {
        n: r(*s)
        for n, s in (("hada_w1_a", (64, 4)), ("hada_w1_b", (4, 32)), ("hada_w2_a", (64, 4)), ("hada_w2_b", (4, 32)))
    }
    lora = {f"{STEM}.{n}": v for n, v in p.items()} | {STEM + ".alpha": np.array(1.0, np.float32)}
    out, _ = merge(tmp_path, {KEY: w}, [(lora, 0.5)])
    d = (t(p["hada_w1_a"]) @ t(p["hada_w1_b"])) * (t(p["hada_w2_a"]) @ t(p["hada_w2_b"]))
    np.testing.assert_allclose(out[KEY], (t(w) + 0.5 * 0.25 * d).numpy(), rtol=1e-6, atol=1e-7)


def test_lokr(tmp_path: Path) -> None:
    w = r(64, 32)
    w1, w2a, w2b = r(4, 4), r(16, 2), r(2, 8)
    lora = {
        STEM + ".lokr_w1": w1,
        STEM + ".lokr_w2_a": w2a,
        STEM + ".lokr_w2_b": w2b,
        STEM + ".alpha": np.array(4.0, np.float32),
    }
    out, _ = merge(tmp_path, {KEY: w}, [(lora, 1.0)])
    ref = t(w) + (4.0 / 2) * torch.kron(t(w1), t(w2a) @ t(w2b))
    np.testing.assert_allclose(out[KEY], ref.numpy(), rtol=1e-6, atol=1e-6)


def test_full_diff_with_bias(tmp_path: Path) -> None:
    w, b = r(64, 32), r(64)
    bias_key = KEY.replace(".weight", ".bias")
    lora = {STEM + ".diff": r(64, 32), STEM + ".diff_b": r(64)}
    out, _ = merge(tmp_path, {KEY: w, bias_key: b}, [(lora, 0.3)])
    np.testing.assert_allclose(out[KEY], (t(w) + 0.3 * t(lora[STEM + ".diff"])).numpy(), rtol=1e-6)
    np.testing.assert_allclose(out[bias_key], (t(b) + 0.3 * t(lora[STEM + ".diff_b"])).numpy(), rtol=1e-6)


@pytest.mark.parametrize("strength", [1.0, 0.7])
def test_dora_as_lycoris_merges(tmp_path: Path, strength: float) -> None:
    w = r(64, 32)
    up, down, scale = r(64, 4), r(4, 32), (1.0 + r(64, 1)).astype(np.float32)
    lora = {STEM + ".lora_up.weight": up, STEM + ".lora_down.weight": down, STEM + ".alpha": np.array(2.0, np.float32)}
    lora[STEM + ".dora_scale"] = scale
    out, _ = merge(tmp_path, {KEY: w}, [(lora, strength)])
    # LyCORIS lycoris/modules/locon.py get_merged_weight + apply_weight_decompose (wd_on_out)
    merged = t(w) + (2.0 / 4) * (t(up) @ t(down))
    norm = merged.reshape(64, -1).norm(dim=1).reshape(64, 1) + torch.finfo(torch.float32).eps
    factor = t(scale) / norm
    factor = strength * (factor - 1) + 1
    np.testing.assert_allclose(out[KEY], (merged * factor).numpy(), rtol=1e-5, atol=1e-6)


PEFT_STEMS = {  # diffusers/PEFT names of KEY and CONV in an SDXL UNet
    KEY: "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k",
    CONV: "unet.down_blocks.0.resnets.0.conv1",
}


def peft_dora(weight: np.ndarray, rank: int, alpha: int, strength: float) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """A DoRA adapter made and merged by PEFT itself on one layer holding ``weight``: (its saved
    state dict, keys without the module name, and the weight PEFT merges at ``strength``, which
    diffusers' fuse_lora applies as PEFT's scale_layer)."""
    peft = pytest.importorskip("peft")
    from peft.tuners.lora import LoraLayer

    torch.manual_seed(0)
    out, inp = weight.shape[:2]
    conv = weight.ndim == 4
    layer = torch.nn.Conv2d(inp, out, weight.shape[2], bias=False) if conv else torch.nn.Linear(inp, out, bias=False)
    layer.weight.data = t(weight)
    cfg = peft.LoraConfig(r=rank, lora_alpha=alpha, target_modules=["0"], use_dora=True, init_lora_weights=False)
    net = peft.inject_adapter_in_model(cfg, torch.nn.Sequential(layer))
    net(torch.randn(1, inp, 4, 4) if conv else torch.randn(1, inp))  # PEFT makes the magnitude on first use
    lora = net[0]
    assert isinstance(lora, LoraLayer)
    with torch.no_grad():  # a trained magnitude differs from the initial norm
        lora.lora_magnitude_vector["default"].weight.mul_(
            1 + 0.2 * torch.rand_like(lora.lora_magnitude_vector["default"].weight)
        )
    state = {k.removeprefix("0"): v.detach().numpy().copy() for k, v in peft.get_peft_model_state_dict(net).items()}
    lora.scale_layer(strength)
    lora.merge()
    return state, lora.get_base_layer().weight.detach().numpy()


@pytest.mark.parametrize(
    ("key", "shape", "alpha", "strength"),
    [(KEY, (64, 32), 4, 1.0), (KEY, (64, 32), 8, 0.6), (CONV, (16, 8, 3, 3), 8, 1.0), (CONV, (16, 8, 3, 3), 4, -0.5)],
)
def test_peft_dora_merges_as_peft(
    tmp_path: Path, key: str, shape: tuple[int, ...], alpha: int, strength: float
) -> None:
    w = r(*shape)
    state, want = peft_dora(w, 4, alpha, strength)
    assert state[".lora_magnitude_vector"].shape == ((64,) if key == KEY else (1, 16, 1, 1))
    lora = {PEFT_STEMS[key] + k: v for k, v in state.items()}
    if alpha != 4:  # a PEFT file keeps lora_alpha in its config: written as an alpha entry, as our converter does
        lora[PEFT_STEMS[key] + ".alpha"] = np.array(alpha, np.float32)
    out, plan = merge(tmp_path, {key: w}, [(lora, strength)], family="sdxl")
    assert "1 of 1 targets merged" in str(plan.notes[0])
    np.testing.assert_allclose(out[key], want, rtol=1e-5, atol=1e-6)


def test_peft_dora_magnitude_spellings_and_refusals(tmp_path: Path) -> None:
    from sdmodel.formats.base import TensorInfo

    stem = PEFT_STEMS[KEY]
    for suffix in (".lora_magnitude_vector", ".lora_magnitude_vector.weight", ".lora_magnitude_vector.default.weight"):
        names = [stem + ".lora_A.weight", stem + ".lora_B.weight", stem + suffix]
        keys = parse({n: TensorInfo(n, "F32", (1, 1)) for n in names})
        assert keys.other == [] and keys.targets[stem].dora, suffix
    lora = {stem + ".lora_A.weight": r(4, 32), stem + ".lora_B.weight": r(64, 4)}
    with pytest.raises(
        ConversionError, match=r"magnitude \(lora_magnitude_vector\) has 32 values, the model weight 64 output rows"
    ):
        merge(tmp_path, {KEY: r(64, 32)}, [(lora | {stem + ".lora_magnitude_vector": r(32)}, 1.0)], family="sdxl")
    zero = np.zeros((64, 32), np.float32)
    lora[stem + ".lora_B.weight"] = np.zeros((64, 4), np.float32)
    with pytest.raises(ConversionError, match="norm of output row 0, which is 0"):
        merge(tmp_path, {KEY: zero}, [(lora | {stem + ".lora_magnitude_vector": r(64)}, 1.0)], family="sdxl")


@pytest.mark.parametrize("block", [1 << 20, 20])  # one block, or blocks of 2 rows
def test_flux_diffusers_names_merge_into_fused_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    from sdmodel.lora import delta

    monkeypatch.setattr(delta, "BLOCK", block)
    h = 8
    model = {
        "double_blocks.0.img_attn.qkv.weight": r(3 * h, h),
        "double_blocks.0.txt_attn.qkv.weight": r(3 * h, h),
        "single_blocks.0.linear1.weight": r(7 * h, h),
        "final_layer.adaLN_modulation.1.weight": r(2 * h, h),
    }
    lora = {}
    parts = {
        "transformer_blocks.0.attn.to_k": (h, h),
        "transformer_blocks.0.attn.add_v_proj": (h, h),
        "single_transformer_blocks.0.proj_mlp": (4 * h, h),
        "norm_out.linear": (2 * h, h),
    }
    for p, (o, i) in parts.items():
        lora[f"transformer.{p}.lora_A.weight"] = r(2, i)
        lora[f"transformer.{p}.lora_B.weight"] = r(o, 2)
    out, _ = merge(tmp_path, model, [(lora, 1.0)])

    def d(p: str) -> torch.Tensor:
        return t(lora[f"transformer.{p}.lora_B.weight"]) @ t(lora[f"transformer.{p}.lora_A.weight"])

    ref = t(model["double_blocks.0.img_attn.qkv.weight"]).clone()
    ref[h : 2 * h] += d("transformer_blocks.0.attn.to_k")
    np.testing.assert_allclose(out["double_blocks.0.img_attn.qkv.weight"], ref.numpy(), rtol=1e-6, atol=1e-7)
    ref = t(model["double_blocks.0.txt_attn.qkv.weight"]).clone()
    ref[2 * h :] += d("transformer_blocks.0.attn.add_v_proj")
    np.testing.assert_allclose(out["double_blocks.0.txt_attn.qkv.weight"], ref.numpy(), rtol=1e-6, atol=1e-7)
    ref = t(model["single_blocks.0.linear1.weight"]).clone()
    ref[3 * h :] += d("single_transformer_blocks.0.proj_mlp")
    np.testing.assert_allclose(out["single_blocks.0.linear1.weight"], ref.numpy(), rtol=1e-6, atol=1e-7)
    # diffusers' norm_out is (scale, shift), BFL's final adaLN (shift, scale)
    dd = d("norm_out.linear")
    ref = t(model["final_layer.adaLN_modulation.1.weight"]) + torch.cat([dd[h:], dd[:h]])
    np.testing.assert_allclose(out["final_layer.adaLN_modulation.1.weight"], ref.numpy(), rtol=1e-6, atol=1e-7)


def test_low_rank_blocks_equal_the_whole_difference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of rows (here 3 rows of 32 values, so 22 blocks of a 64-row weight) add what the whole
    ``up @ down`` adds (the swapped rows: test_flux_diffusers_names_merge_into_fused_rows)."""
    from sdmodel.lora import delta

    monkeypatch.setattr(delta, "BLOCK", 100)
    w, up, down = r(64, 32), r(64, 4), r(4, 32)
    lora = {STEM + ".lora_up.weight": up, STEM + ".lora_down.weight": down, STEM + ".alpha": np.array(2.0, np.float32)}
    out, _ = merge(tmp_path, {KEY: w}, [(lora, 0.8)])
    np.testing.assert_allclose(out[KEY], (t(w) + 0.8 * (2.0 / 4) * (t(up) @ t(down))).numpy(), rtol=1e-6, atol=1e-7)


def test_missing_targets_refuse_unless_allowed(tmp_path: Path) -> None:
    w = r(64, 32)
    other = "lora_unet_input_blocks_7_1_transformer_blocks_0_attn2_to_k"
    lora = {STEM + ".lora_up.weight": r(64, 4), STEM + ".lora_down.weight": r(4, 32)}
    lora |= {other + ".lora_up.weight": r(64, 4), other + ".lora_down.weight": r(4, 32)}
    with pytest.raises(ConversionError, match="1 of 2 targets are not in the model"):
        merge(tmp_path, {KEY: w}, [(lora, 1.0)])
    _out, plan = merge(tmp_path, {KEY: w}, [(lora, 1.0)], allow_missing=True)
    assert "1 of 2 targets merged; 1 not in the model" in str(plan.notes[0])


def test_shape_mismatch_and_unsupported_refuse(tmp_path: Path) -> None:
    lora = {STEM + ".lora_up.weight": r(64, 4), STEM + ".lora_down.weight": r(4, 16)}
    with pytest.raises(ConversionError, match="do not fit the model"):
        merge(tmp_path, {KEY: r(64, 32)}, [(lora, 1.0)])
    with pytest.raises(ConversionError, match="OFT"):
        merge(tmp_path, {KEY: r(64, 32)}, [({STEM + ".oft_blocks": r(4, 16, 16)}, 1.0)])


def test_lora_spec_parsing() -> None:
    assert LoraSpec.parse("a.safetensors:0.5") == LoraSpec(Path("a.safetensors"), 0.5)
    assert LoraSpec.parse("a.safetensors") == LoraSpec(Path("a.safetensors"), 1.0)
    assert LoraSpec.parse("C:/x/a.safetensors") == LoraSpec(Path("C:/x/a.safetensors"), 1.0)
    with pytest.raises(ConversionError):
        LoraSpec.parse("a.safetensors:nan")


def test_parse_groups_every_tensor() -> None:
    from sdmodel.formats.base import TensorInfo

    names = [STEM + ".lora_up.weight", STEM + ".lora_down.weight", STEM + ".alpha"]
    keys = parse({n: TensorInfo(n, "F16", (1, 1)) for n in names})
    assert list(keys.targets) == [STEM] and keys.other == []


def test_cli_merge_and_dry_run(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from sdmodel.cli import main_group

    w = r(64, 32, dtype=np.float16)
    model = tmp_path / "m.safetensors"
    save_file({KEY: w, CONV: r(16, 8, 3, 3, dtype=np.float16)}, str(model))
    up, down = r(64, 4), r(4, 32)
    lora = tmp_path / "style.safetensors"
    save_file(
        {STEM + ".lora_up.weight": up, STEM + ".lora_down.weight": down, STEM + ".alpha": np.array(4.0, np.float32)},
        str(lora),
    )
    runner = CliRunner()
    res = runner.invoke(main_group, ["merge", str(model), f"{lora}:0.5", "--dry-run", "--json"])
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "m-lora.safetensors").exists()
    res = runner.invoke(main_group, ["merge", str(model), f"{lora}:0.5", "--dtype", "fp32"])
    assert res.exit_code == 0, res.output
    out = load_file(str(tmp_path / "m-fp32-lora.safetensors"))
    want = t(w) + 0.5 * (t(up) @ t(down))
    np.testing.assert_allclose(out[KEY], want.numpy(), rtol=1e-6, atol=1e-7)
    assert out[KEY].dtype == np.float32
    with open_model(tmp_path / "m-fp32-lora.safetensors") as s:
        assert "style.safetensors" in s.metadata["sdmodel.merged_loras"]
    res = runner.invoke(main_group, ["merge", str(model), str(tmp_path / "nope.safetensors")])
    assert res.exit_code == 2


def test_cli_merge_refusal_writes_nothing(tmp_path: Path) -> None:
    from sdmodel.cli import main

    model = tmp_path / "m.safetensors"
    save_file({KEY: r(64, 32)}, str(model))
    lora = tmp_path / "l.safetensors"
    save_file({"lora_unet_nowhere.lora_up.weight": r(4, 2), "lora_unet_nowhere.lora_down.weight": r(2, 4)}, str(lora))
    with pytest.raises(SystemExit) as e:
        main(["merge", str(model), str(lora), "-o", str(tmp_path / "out.safetensors")])
    assert e.value.code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.safetensors", "m.safetensors"]


def test_sd3_diffusers_output_merges_as_the_kohya_lora(tmp_path: Path) -> None:
    """The same LoRA in kohya MMDiT names and in our diffusers output (fused q/k/v split, halves of
    the final and the last context adaLN swapped, alpha in PEFT metadata) changes the model alike."""
    from tests.test_lora_convert import convert, layout_lora

    select = r"^(joint_blocks\.0\.x_block\.attn\.qkv|joint_blocks\.23\.context_block\.adaLN|final_layer\.adaLN)"
    kohya = layout_lora("families/sd35_medium.comfy", select)
    diffusers, meta = convert(tmp_path, kohya, "diffusers", "sd3", name="d")
    assert len({round(float(v), 3) for k, v in kohya.items() if k.endswith(".alpha")} - {2.0}) > 0
    model = {
        "joint_blocks.0.x_block.attn.qkv.weight": r(4608, 1536),
        "joint_blocks.23.context_block.adaLN_modulation.1.weight": r(3072, 1536),
        "final_layer.adaLN_modulation.1.weight": r(3072, 1536),
    }
    (tmp_path / "k").mkdir()
    want, _ = merge(tmp_path / "k", model, [(kohya, 0.7)])
    (tmp_path / "p").mkdir()
    mpath = tmp_path / "p" / "model.safetensors"
    save_file(model, str(mpath))
    lpath = tmp_path / "p" / "lora.safetensors"
    save_file(diffusers, str(lpath), metadata=meta)
    with open_model(mpath) as src, open_model(lpath) as lora:
        plan = initial_plan(src)
        apply_loras(plan, [(lora, 0.7)], None)
        execute(plan, tmp_path / "p" / "out.safetensors", fmt="safetensors", overwrite=True)
    got = load_file(str(tmp_path / "p" / "out.safetensors"))
    for k in model:
        assert not np.array_equal(got[k], model[k]), k
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)


def test_peft_metadata_alphas_as_peft_reads_them(tmp_path: Path) -> None:
    """Alphas from diffusers' lora_adapter_metadata: the first alpha_pattern key that ends the module
    path wins, else lora_alpha; keys are taken literally (a hostile regex is no pattern)."""
    import json

    from sdmodel.lora.keys import read_peft_alphas

    model = {"a.proj_out.weight": r(8, 8), "proj_out.weight": r(8, 8), "b.proj_out.weight": r(8, 8)}
    lora = {}
    for m in ("a.proj_out", "proj_out", "b.proj_out"):
        lora[f"transformer.{m}.lora_A.weight"] = r(2, 8)
        lora[f"transformer.{m}.lora_B.weight"] = r(8, 2)
    meta = {
        "transformer.alpha_pattern": {"a.proj_out": 4.0, "proj_out": 1.0, "(x+)+$": 9.0},
        "transformer.lora_alpha": 2.0,
    }
    metadata = {"lora_adapter_metadata": json.dumps(meta)}
    path = tmp_path / "lora.safetensors"
    save_file(lora, str(path), metadata=metadata)
    with open_model(path) as src:
        keys = parse(src.tensors)
        read_peft_alphas(keys, src.metadata)
        assert {s: t.peft_alpha for s, t in keys.targets.items()} == {
            "transformer.a.proj_out": 4.0,
            "transformer.proj_out": 1.0,
            "transformer.b.proj_out": 1.0,
        }
    out, _ = merge(tmp_path, model, [(lora, 1.0, metadata)])
    for m, alpha in (("a.proj_out", 4.0), ("b.proj_out", 1.0)):
        d = t(lora[f"transformer.{m}.lora_B.weight"]) @ t(lora[f"transformer.{m}.lora_A.weight"])
        want = t(model[f"{m}.weight"]) + alpha / 2 * d
        np.testing.assert_allclose(out[f"{m}.weight"], want.numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]"])
def test_broken_peft_metadata_refuses_in_one_line(tmp_path: Path, raw: str) -> None:
    import subprocess
    import sys

    save_file({"w.weight": r(8, 8)}, str(tmp_path / "m.safetensors"))
    lora = {"transformer.w.lora_A.weight": r(2, 8), "transformer.w.lora_B.weight": r(8, 2)}
    save_file(lora, str(tmp_path / "l.safetensors"), metadata={"lora_adapter_metadata": raw})
    out = tmp_path / "out.safetensors"
    res = subprocess.run(
        [sys.executable, "-m", "sdmodel", "merge", "m.safetensors", "l.safetensors", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert res.returncode == 2 and "lora_adapter_metadata" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not out.exists()
