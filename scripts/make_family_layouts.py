"""Regenerate tests/data/layouts/families/*.json.gz: the tensor names and shapes of every image family,
in both namings, built on the meta device (no weights, nothing downloaded).

- diffusers names: diffusers' model classes with the released configs (the test environment has them).
- single-file (original / ComfyUI) names: ComfyUI's own model classes (comfy/ldm/...), from a ComfyUI
  checkout given with --comfyui (its dependencies: torch, einops).

    python scripts/make_family_layouts.py --comfyui /path/to/ComfyUI [--only NAME...]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "layouts" / "families"
DTYPE = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def state_layout(module: torch.nn.Module, dtype: str = "BF16") -> dict[str, list]:
    out = {}
    for name, t in module.state_dict(keep_vars=True).items():
        out[name] = [list(t.shape), dtype if t.is_floating_point() else DTYPE.get(t.dtype, "I64")]
    return out


# ------------------------------------------------------------------------------------ diffusers


def diffusers_builders() -> dict[str, Callable[[], torch.nn.Module]]:
    import diffusers as d

    flux = dict(
        patch_size=1,
        in_channels=64,
        num_layers=19,
        num_single_layers=38,
        attention_head_dim=128,
        num_attention_heads=24,
        joint_attention_dim=4096,
        pooled_projection_dim=768,
        axes_dims_rope=(16, 56, 56),
    )
    sdxl_unet = dict(
        sample_size=128,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(320, 640, 1280),
        layers_per_block=2,
        cross_attention_dim=2048,
        transformer_layers_per_block=(1, 2, 10),
        attention_head_dim=(5, 10, 20),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816,
    )
    sd3 = dict(
        sample_size=128,
        patch_size=2,
        in_channels=16,
        out_channels=16,
        attention_head_dim=64,
        joint_attention_dim=4096,
        pooled_projection_dim=2048,
    )
    return {
        "flux_dev.diffusers": lambda: d.FluxTransformer2DModel(**flux, guidance_embeds=True),
        "flux_schnell.diffusers": lambda: d.FluxTransformer2DModel(**flux, guidance_embeds=False),
        "flux_fill.diffusers": lambda: d.FluxTransformer2DModel(
            **(flux | {"in_channels": 384}), out_channels=64, guidance_embeds=True
        ),
        "flux_canny.diffusers": lambda: d.FluxTransformer2DModel(
            **(flux | {"in_channels": 128}), out_channels=64, guidance_embeds=True
        ),
        "flux2_dev.diffusers": lambda: d.Flux2Transformer2DModel(),
        "flux2_klein4b.diffusers": lambda: d.Flux2Transformer2DModel(
            num_layers=5, num_single_layers=20, num_attention_heads=24, joint_attention_dim=7680
        ),
        "flux2_klein9b.diffusers": lambda: d.Flux2Transformer2DModel(
            num_layers=8, num_single_layers=24, num_attention_heads=32, joint_attention_dim=12288
        ),
        "chroma.diffusers": lambda: d.ChromaTransformer2DModel(),
        "sd3_medium.diffusers": lambda: d.SD3Transformer2DModel(
            **sd3, num_layers=24, num_attention_heads=24, caption_projection_dim=1536, pos_embed_max_size=192
        ),
        "sd35_medium.diffusers": lambda: d.SD3Transformer2DModel(
            **sd3,
            num_layers=24,
            num_attention_heads=24,
            caption_projection_dim=1536,
            pos_embed_max_size=384,
            dual_attention_layers=tuple(range(13)),
            qk_norm="rms_norm",
        ),
        "sd35_large.diffusers": lambda: d.SD3Transformer2DModel(
            **sd3,
            num_layers=38,
            num_attention_heads=38,
            caption_projection_dim=2432,
            pos_embed_max_size=192,
            qk_norm="rms_norm",
        ),
        "auraflow.diffusers": lambda: d.AuraFlowTransformer2DModel(),
        "pixart_alpha.diffusers": lambda: d.PixArtTransformer2DModel(
            sample_size=128, use_additional_conditions=True, caption_channels=4096, cross_attention_dim=1152
        ),
        "pixart_sigma.diffusers": lambda: d.PixArtTransformer2DModel(
            sample_size=128, use_additional_conditions=False, caption_channels=4096, cross_attention_dim=1152
        ),
        "sana.diffusers": lambda: d.SanaTransformer2DModel(
            in_channels=32,
            out_channels=32,
            num_attention_heads=70,
            attention_head_dim=32,
            num_layers=20,
            num_cross_attention_heads=20,
            cross_attention_head_dim=112,
            cross_attention_dim=2240,
            caption_channels=2304,
        ),
        "hunyuan_dit.diffusers": lambda: d.HunyuanDiT2DModel(
            num_attention_heads=16,
            attention_head_dim=88,
            num_layers=40,
            in_channels=4,
            learn_sigma=True,
            sample_size=128,
            patch_size=2,
        ),
        "lumina2.diffusers": lambda: d.Lumina2Transformer2DModel(),
        "z_image.diffusers": lambda: d.ZImageTransformer2DModel(),
        "hidream_i1.diffusers": lambda: d.HiDreamImageTransformer2DModel(
            patch_size=2,
            in_channels=16,
            out_channels=16,
            num_layers=16,
            num_single_layers=32,
            attention_head_dim=128,
            num_attention_heads=20,
            caption_channels=[4096, 4096],
            text_emb_dim=2048,
            num_routed_experts=4,
            num_activated_experts=2,
            axes_dims_rope=(64, 32, 32),
            max_resolution=(128, 128),
            llama_layers=list(range(32)) + [31] * 16,
        ),
        "qwen_image.diffusers": lambda: d.QwenImageTransformer2DModel(
            patch_size=2,
            in_channels=64,
            out_channels=16,
            num_layers=60,
            attention_head_dim=128,
            num_attention_heads=24,
            joint_attention_dim=3584,
            axes_dims_rope=(16, 56, 56),
        ),
        "qwen_image21.diffusers": lambda: d.QwenImage21Transformer2DModel(),
        "ssd1b.diffusers": lambda: d.UNet2DConditionModel(**(sdxl_unet | {"transformer_layers_per_block": (0, 2, 4)})),
        "kolors.diffusers": lambda: d.UNet2DConditionModel(
            **(sdxl_unet | {"projection_class_embeddings_input_dim": 5632}),
            encoder_hid_dim=4096,
            encoder_hid_dim_type="text_proj",
        ),
    }


# ------------------------------------------------------------------------------------ ComfyUI


def comfy_builders(root: Path) -> dict[str, Callable[[], torch.nn.Module]]:
    sys.path.insert(0, str(root))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.ops

    ops = {"operations": comfy.ops.disable_weight_init, "device": "meta"}

    def flux(**kw):
        from comfy.ldm.flux.model import Flux

        cfg = dict(
            in_channels=16,
            out_channels=16,
            vec_in_dim=768,
            context_in_dim=4096,
            hidden_size=3072,
            mlp_ratio=4.0,
            num_heads=24,
            depth=19,
            depth_single_blocks=38,
            axes_dim=[16, 56, 56],
            theta=10000,
            patch_size=2,
            qkv_bias=True,
            guidance_embed=True,
        )
        return Flux(**(cfg | kw), **ops)

    def chroma(radiance: bool = False):
        cfg = dict(
            in_channels=64,
            out_channels=64,
            context_in_dim=4096,
            hidden_size=3072,
            mlp_ratio=4.0,
            num_heads=24,
            depth=19,
            depth_single_blocks=38,
            axes_dim=[16, 56, 56],
            theta=10000,
            patch_size=2,
            qkv_bias=True,
            in_dim=64,
            out_dim=3072,
            hidden_dim=5120,
            n_layers=5,
        )
        if not radiance:
            from comfy.ldm.chroma.model import Chroma

            return Chroma(**cfg, **ops)
        from comfy.ldm.chroma_radiance.model import ChromaRadiance

        cfg |= dict(
            in_channels=3,
            out_channels=3,
            patch_size=16,
            nerf_hidden_size=64,
            nerf_mlp_ratio=4,
            nerf_depth=4,
            nerf_max_freqs=8,
            nerf_tile_size=32,
            nerf_final_head_type="conv",
            nerf_embedder_dtype=torch.float32,
        )
        return ChromaRadiance(**cfg, **ops)

    def sd3(depth: int, pos: int, **kw):
        from comfy.ldm.modules.diffusionmodules.mmdit import MMDiT

        ctx = {"target": "torch.nn.Linear", "params": {"in_features": 4096, "out_features": 64 * depth}}
        return MMDiT(
            in_channels=16,
            out_channels=16,
            patch_size=2,
            depth=depth,
            adm_in_channels=2048,
            context_embedder_config=ctx,
            pos_embed_max_size=pos,
            num_patches=pos * pos,
            **kw,
            **ops,
        )

    def aura():
        from comfy.ldm.aura.mmdit import MMDiT

        return MMDiT(max_seq=1024, cond_seq_dim=2048, n_double_layers=4, n_layers=36, **ops)

    def pixart(alpha: bool):
        from comfy.ldm.pixart.pixartms import PixArtMS

        return PixArtMS(input_size=128, micro_condition=alpha, model_max_length=120 if alpha else 300, **ops)

    def hydit():
        from comfy.ldm.hydit.models import HunYuanDiT

        return HunYuanDiT(input_size=(128, 128), depth=40, hidden_size=1408, num_heads=16, mlp_ratio=4.3637, **ops)

    def lumina2():
        from comfy.ldm.lumina.model import NextDiT

        return NextDiT(
            patch_size=2,
            in_channels=16,
            dim=2304,
            cap_feat_dim=2304,
            n_layers=26,
            n_heads=24,
            n_kv_heads=8,
            qk_norm=True,
            axes_dims=[32, 32, 32],
            axes_lens=[300, 512, 512],
            **ops,
        )

    def hidream():
        from comfy.ldm.hidream.model import HiDreamImageTransformer2DModel

        return HiDreamImageTransformer2DModel(
            patch_size=2,
            in_channels=16,
            out_channels=16,
            num_layers=16,
            num_single_layers=32,
            attention_head_dim=128,
            num_attention_heads=20,
            caption_channels=[4096, 4096],
            text_emb_dim=2048,
            num_routed_experts=4,
            num_activated_experts=2,
            axes_dims_rope=[64, 32, 32],
            max_resolution=[128, 128],
            llama_layers=list(range(32)) + [31] * 16,
            **ops,
        )

    def qwen():
        from comfy.ldm.qwen_image.model import QwenImageTransformer2DModel

        return QwenImageTransformer2DModel(num_layers=60, **ops)

    def cascade(stage: str):
        if stage == "c":
            from comfy.ldm.cascade.stage_c import StageC

            return StageC(**ops)
        from comfy.ldm.cascade.stage_b import StageB

        return StageB(**ops)

    def unet(**kw):
        from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

        return UNetModel(**kw, **ops)

    sdxl = dict(
        use_checkpoint=False,
        image_size=32,
        out_channels=4,
        use_spatial_transformer=True,
        legacy=False,
        num_classes="sequential",
        adm_in_channels=2816,
        in_channels=4,
        model_channels=320,
        use_linear_in_transformer=True,
        context_dim=2048,
        num_head_channels=64,
    )
    sd21 = dict(
        use_checkpoint=False,
        image_size=32,
        use_spatial_transformer=True,
        legacy=False,
        num_res_blocks=[2, 2, 2, 2],
        channel_mult=[1, 2, 4, 4],
        transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0],
        transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
        transformer_depth_middle=1,
    )

    return {
        "flux_dev.comfy": lambda: flux(),
        "flux_schnell.comfy": lambda: flux(guidance_embed=False),
        "flux_fill.comfy": lambda: flux(in_channels=96),
        "flux_canny.comfy": lambda: flux(in_channels=32),
        "chroma.comfy": lambda: chroma(),
        "chroma_radiance.comfy": lambda: chroma(radiance=True),
        "sd3_medium.comfy": lambda: sd3(24, 192),
        "sd35_medium.comfy": lambda: sd3(24, 384, qk_norm="rms", x_block_self_attn_layers=list(range(13))),
        "sd35_large.comfy": lambda: sd3(38, 192, qk_norm="rms"),
        "auraflow.comfy": aura,
        "pixart_alpha.comfy": lambda: pixart(True),
        "pixart_sigma.comfy": lambda: pixart(False),
        "hunyuan_dit.comfy": hydit,
        "lumina2.comfy": lumina2,
        "hidream_i1.comfy": hidream,
        "qwen_image.comfy": qwen,
        "stable_cascade_c.comfy": lambda: cascade("c"),
        "stable_cascade_b.comfy": lambda: cascade("b"),
        "ssd1b.comfy": lambda: unet(
            **sdxl,
            num_res_blocks=[2, 2, 2],
            channel_mult=[1, 2, 4],
            transformer_depth=[0, 0, 2, 2, 4, 4],
            transformer_depth_output=[0, 0, 0, 1, 1, 2, 10, 4, 4],
            transformer_depth_middle=-1,
        ),
        "vega.comfy": lambda: unet(
            **sdxl,
            num_res_blocks=[2, 2, 2],
            channel_mult=[1, 2, 4],
            transformer_depth=[0, 0, 1, 1, 2, 2],
            transformer_depth_output=[0, 0, 0, 1, 1, 1, 2, 2, 2],
            transformer_depth_middle=-1,
        ),
        "koala_700m.comfy": lambda: unet(
            **sdxl,
            num_res_blocks=[1, 1, 1],
            channel_mult=[1, 2, 4],
            transformer_depth=[0, 2, 5],
            transformer_depth_output=[0, 0, 2, 2, 5, 5],
            transformer_depth_middle=-2,
        ),
        "koala_1b.comfy": lambda: unet(
            **sdxl,
            num_res_blocks=[1, 1, 1],
            channel_mult=[1, 2, 4],
            transformer_depth=[0, 2, 6],
            transformer_depth_output=[0, 0, 2, 2, 6, 6],
            transformer_depth_middle=6,
        ),
        "stable_zero123.comfy": lambda: unet(
            **sd21,
            in_channels=8,
            out_channels=4,
            model_channels=320,
            context_dim=768,
            num_heads=8,
            num_head_channels=-1,
            use_linear_in_transformer=False,
            adm_in_channels=None,
        ),
        "x4_upscaler.comfy": lambda: unet(
            **(sd21 | {"channel_mult": [1, 2, 2, 4]}),
            in_channels=7,
            out_channels=4,
            model_channels=256,
            context_dim=1024,
            num_heads=8,
            num_head_channels=-1,
            use_linear_in_transformer=True,
            num_classes=1000,
            disable_self_attentions=[True, True, True, False],
        ),
    }


# ------------------------------------------- single-file names of families ComfyUI's snapshot lacks
# The inverse of diffusers' single-file converters (diffusers/loaders/single_file_utils.py:
# convert_flux2_transformer_checkpoint_to_diffusers, convert_z_image_..., convert_sana_...): names and
# shapes only, fused q/k/v rebuilt by stacking.

Lay = dict[str, list]


def _fuse(lay: Lay, out: Lay, parts: list[str], target: str) -> None:
    """Stack the diffusers pieces ``parts`` (by rows) into ``target``."""
    shapes = [lay.pop(p)[0] for p in parts]
    out[target] = [[sum(s[0] for s in shapes), *shapes[0][1:]], "BF16"]


def _renamed(lay: Lay, out: Lay, pairs: list[tuple[str, str]]) -> None:
    for name, v in lay.items():
        for a, b in pairs:
            name = name.replace(a, b)
        out[name] = v


def flux2_original(lay: Lay) -> Lay:
    lay, out = dict(lay), {}
    blocks = {int(k.split(".")[1]) for k in lay if k.startswith("transformer_blocks.")}
    for i in blocks:
        d, o = f"transformer_blocks.{i}.attn.", f"double_blocks.{i}."
        _fuse(lay, out, [d + "to_q.weight", d + "to_k.weight", d + "to_v.weight"], o + "img_attn.qkv.weight")
        _fuse(lay, out, [d + f"add_{c}_proj.weight" for c in "qkv"], o + "txt_attn.qkv.weight")
    pairs = [
        (".attn.norm_added_q.weight", ".txt_attn.norm.query_norm.scale"),
        (".attn.norm_added_k.weight", ".txt_attn.norm.key_norm.scale"),
        (".attn.to_add_out.", ".txt_attn.proj."),
        (".ff_context.linear_in.", ".txt_mlp.0."),
        (".ff_context.linear_out.", ".txt_mlp.2."),
        (".attn.to_qkv_mlp_proj.", ".linear1."),
        (".attn.to_out.0.", ".img_attn.proj."),
        (".ff.linear_in.", ".img_mlp.0."),
        (".ff.linear_out.", ".img_mlp.2."),
        ("single_transformer_blocks.", "single_blocks."),
        ("transformer_blocks.", "double_blocks."),
        ("x_embedder.", "img_in."),
        ("context_embedder.", "txt_in."),
        ("time_guidance_embed.timestep_embedder.linear_1.", "time_in.in_layer."),
        ("time_guidance_embed.timestep_embedder.linear_2.", "time_in.out_layer."),
        ("time_guidance_embed.guidance_embedder.linear_1.", "guidance_in.in_layer."),
        ("time_guidance_embed.guidance_embedder.linear_2.", "guidance_in.out_layer."),
        (".linear.", ".lin."),
        ("proj_out.", "final_layer.linear."),
        ("norm_out.lin.", "final_layer.adaLN_modulation.1."),
    ]
    _renamed(lay, out, pairs)
    fixed = {}
    for k, v in out.items():
        if k.startswith("single_blocks."):
            k = k.replace(".attn.to_out.", ".linear2.").replace(".attn.norm_q.weight", ".norm.query_norm.scale")
            k = k.replace(".attn.norm_k.weight", ".norm.key_norm.scale")
        elif k.startswith("double_blocks."):
            k = k.replace(".attn.norm_q.weight", ".img_attn.norm.query_norm.scale")
            k = k.replace(".attn.norm_k.weight", ".img_attn.norm.key_norm.scale")
        fixed[k] = v
    return fixed


def z_image_original(lay: Lay) -> Lay:
    lay, out = dict(lay), {}
    for k in [k for k in lay if k.endswith(".attention.to_q.weight")]:
        base = k[: -len("to_q.weight")]
        _fuse(lay, out, [base + f"to_{c}.weight" for c in "qkv"], base + "qkv.weight")
    pairs = [
        ("all_final_layer.2-1.", "final_layer."),
        ("all_x_embedder.2-1.", "x_embedder."),
        (".attention.to_out.0.", ".attention.out."),
        (".attention.norm_k.", ".attention.k_norm."),
        (".attention.norm_q.", ".attention.q_norm."),
    ]
    _renamed(lay, out, pairs)
    return out


def sana_original(lay: Lay) -> Lay:
    lay, out = dict(lay), {}
    blocks = {int(k.split(".")[1]) for k in lay if k.startswith("transformer_blocks.")}
    for i in blocks:
        b, o = f"transformer_blocks.{i}.", f"blocks.{i}."
        _fuse(lay, out, [b + f"attn1.to_{c}.weight" for c in "qkv"], o + "attn.qkv.weight")
        _fuse(lay, out, [b + "attn2.to_k.weight", b + "attn2.to_v.weight"], o + "cross_attn.kv_linear.weight")
        out[o + "cross_attn.kv_linear.bias"] = [[2 * lay.pop(b + "attn2.to_k.bias")[0][0]], "BF16"]
        lay.pop(b + "attn2.to_v.bias")
    pairs = [
        ("patch_embed.proj.", "x_embedder.proj."),
        ("time_embed.emb.timestep_embedder.linear_1.", "t_embedder.mlp.0."),
        ("time_embed.emb.timestep_embedder.linear_2.", "t_embedder.mlp.2."),
        ("time_embed.linear.", "t_block.1."),
        ("caption_projection.linear_1.", "y_embedder.y_proj.fc1."),
        ("caption_projection.linear_2.", "y_embedder.y_proj.fc2."),
        ("caption_norm.", "attention_y_norm."),
        (".attn1.to_out.0.", ".attn.proj."),
        (".attn2.to_q.", ".cross_attn.q_linear."),
        (".attn2.to_out.0.", ".cross_attn.proj."),
        (".ff.conv_inverted.", ".mlp.inverted_conv.conv."),
        (".ff.conv_depth.", ".mlp.depth_conv.conv."),
        (".ff.conv_point.", ".mlp.point_conv.conv."),
        ("transformer_blocks.", "blocks."),
        ("proj_out.", "final_layer.linear."),
    ]
    _renamed(lay, out, pairs)
    out["final_layer.scale_shift_table"] = out.pop("scale_shift_table")
    out["y_embedder.y_embedding"] = [[300, 2304], "BF16"]
    out["pos_embed"] = [[1, 1024, 2240], "BF16"]
    return out


# layout name -> (diffusers layout it is derived from, inverse)
DERIVED: dict[str, tuple[str, Callable[[Lay], Lay]]] = {
    "flux2_dev.original": ("flux2_dev.diffusers", flux2_original),
    "flux2_klein4b.original": ("flux2_klein4b.diffusers", flux2_original),
    "flux2_klein9b.original": ("flux2_klein9b.diffusers", flux2_original),
    "z_image.original": ("z_image.diffusers", z_image_original),
    "sana.original": ("sana.diffusers", sana_original),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--comfyui", type=Path, help="a ComfyUI checkout (for the single-file names)")
    ap.add_argument("--only", nargs="*", help="layout names to build")
    args = ap.parse_args()
    builders = diffusers_builders()
    if args.comfyui:
        builders |= comfy_builders(args.comfyui)
    OUT.mkdir(parents=True, exist_ok=True)
    for name, build in builders.items():
        if args.only and name not in args.only:
            continue
        if name.endswith(".comfy"):
            module = build()  # ComfyUI's classes take device="meta" themselves
        else:
            with torch.device("meta"):
                module = build()
        lay = state_layout(module)
        if name == "stable_zero123.comfy":  # the camera projection sits beside the UNet
            lay |= {"cc_projection.weight": [[768, 772], "F32"], "cc_projection.bias": [[768], "F32"]}
        write(name, lay)
    for name, (base, inverse) in DERIVED.items():
        if not args.only or name in args.only:
            lay = json.loads(gzip.decompress((OUT / f"{base}.json.gz").read_bytes()))["tensors"]
            write(name, inverse(lay))


def write(name: str, lay: Lay) -> None:
    data = json.dumps({"tensors": lay}, separators=(",", ":"), sort_keys=True).encode()
    (OUT / f"{name}.json.gz").write_bytes(gzip.compress(data, mtime=0))
    print(f"{name}: {len(lay)} tensors")


if __name__ == "__main__":
    main()
