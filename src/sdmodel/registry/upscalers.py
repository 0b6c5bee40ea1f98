"""Image upscale models (super-resolution networks A1111 lists in its upscaler menu and ComfyUI
loads with "Load Upscale Model"): family-neutral, the ``variant`` names the architecture and, where
the shapes tell it cheaply, the variant's ``label`` says the scale.

The probes are the telling keys of spandrel's architecture detection (chaiNNer-org/spandrel,
libs/spandrel/spandrel/architectures/<arch>/__init__.py, the ``detect=KeyCondition...`` of each
``Architecture``), which A1111 (modules/modelloader.py load_spandrel_model) and ComfyUI
(comfy_extras/nodes_upscale_model.py) both load these files with. Trainers wrap the state dict
(BasicSR ``{"params_ema": ...}`` / ``{"params": ...}``) or prefix it (``module.``, ``netG.``); the
torch reader flattens a wrapper to a prefix, so the roots are the ones spandrel's
canonicalize_state_dict unwraps or strips.
These networks come last in the match order: their keys share no prefix with the diffusion
networks, and a more specific signature must always win.
"""

from __future__ import annotations

from sdmodel.registry.model import Probe, Signature, Variant

UPSCALE_ROOTS = ("", "params_ema.", "params-ema.", "params.", "net.", "model_state_dict.", "module.", "netG.")
SCALES = (1, 2, 3, 4, 8)


def _pixelshuffle_scales(arch: str, in_key: str, out_key: str) -> tuple[Variant, ...]:
    """Scale variants of a network ending in one pixel-shuffle conv: its output channels are
    ``out_nc * scale**2`` (spandrel util get_scale_and_output_channels, which takes out_nc = in_nc
    first). Only said for 3-channel (RGB) networks, where that reading is unambiguous."""
    return tuple(
        Variant(
            arch,
            (Probe(in_key, (None, 3, None, None)), Probe(out_key, (3 * s * s, None, None, None))),
            label=f"{s}x",
        )
        for s in SCALES
    )


# ESRGAN's original sequential names: model.0 conv, model.1 the RRDB trunk, then per 2x an
# (upsample, conv, act) triple, an HR conv + act and the last conv (spandrel ESRGAN _get_scale:
# log2(scale) = (len(model) - 5) // 3). The last conv's index tells the scale: the other scales
# have an activation (no weight) there.
_ESRGAN_OLD_SCALES = tuple(
    Variant(
        "esrgan",
        (Probe("model.0.weight", (None, 3, 3, 3)), Probe(f"model.{4 + 3 * n}.weight")),
        label=f"{2**n}x",
    )
    for n in (0, 1, 2, 3)
)
# BasicSR RRDBNet (Real-ESRGAN): always two 2x upsample convs; 2x and 1x models pixel-unshuffle the
# input first (conv_first takes 3 * 4 or 3 * 16 channels; Real-ESRGAN rrdbnet_arch.py).
_RRDBNET_SCALES = tuple(
    Variant(
        "esrgan",
        (
            Probe("conv_first.weight", (None, channels, 3, 3)),
            Probe("conv_up2.weight"),
            Probe("conv_up3.weight", absent=True),
        ),
        label=label,
    )
    for channels, label in ((3, "4x"), (12, "2x"), (48, "1x"))
)
_SWIN_BLOCK = "layers.0.residual_group.blocks.0."

UPSCALERS: tuple[Signature, ...] = (
    Signature(
        "esrgan",
        "upscaler",
        None,
        UPSCALE_ROOTS,
        (Probe("model.0.weight", (None, None, 3, 3)), Probe("model.1.sub.0.RDB1.conv1.0.weight")),
        _ESRGAN_OLD_SCALES,
        default_variant="esrgan",
        description="ESRGAN upscaler (original names)",
    ),
    # MMRealSR is an RRDBNet with a degradation-estimation network beside it (spandrel MMRealSR).
    Signature(
        "mmrealsr",
        "upscaler",
        None,
        UPSCALE_ROOTS,
        (
            Probe("conv_first.weight"),
            Probe("body.0.rdb1.conv1.weight"),
            Probe("am_list.0.fc.0.weight"),
            Probe("de_net.conv_first.0.weight"),
        ),
        default_variant="mmrealsr",
        description="MMRealSR upscaler",
    ),
    Signature(
        "esrgan_rrdbnet",
        "upscaler",
        None,
        UPSCALE_ROOTS,
        (
            Probe("conv_first.weight"),
            Probe("body.0.rdb1.conv1.weight"),
            Probe("conv_body.weight"),
            Probe("conv_last.weight"),
            Probe("de_net.conv_first.0.weight", absent=True),
        ),
        _RRDBNET_SCALES,
        default_variant="esrgan",
        description="ESRGAN / Real-ESRGAN upscaler (BasicSR RRDBNet names)",
    ),
    Signature(
        "esrgan_rrdb_trunk",
        "upscaler",
        None,
        UPSCALE_ROOTS,
        (
            Probe("conv_first.weight"),
            Probe("RRDB_trunk.0.RDB1.conv1.weight"),
            Probe("trunk_conv.weight"),
            Probe("conv_last.weight"),
        ),
        default_variant="esrgan",
        description="ESRGAN upscaler (old BasicSR names)",
    ),
    # HAT and Swin2SR carry SwinIR's block names too: they come before SwinIR.
    Signature(
        "hat",
        "upscaler",
        None,
        UPSCALE_ROOTS,
        (
            Probe("relative_position_index_SA"),
            Probe("conv_first.weight"),
            Probe(_SWIN_BLOCK + "conv_block.cab.0.weight"),
            Probe("layers.0.residual_group.overlap_attn.qkv.weight"),
            Probe("conv_last.weight"),
        ),
        default_variant="hat",
        description="HAT upscaler (Hybrid Attention Transformer)",
    ),
    Signature(
        "swin2sr",
        "upscaler",
        None,
        UPSCALE_ROOTS,
        (
            Probe("patch_embed.proj.weight"),
            Probe("conv_first.weight"),
            Probe(_SWIN_BLOCK + "norm1.weight"),
            Probe(_SWIN_BLOCK + "mlp.fc1.bias"),
            Probe(_SWIN_BLOCK + "attn.relative_position_index"),
        ),
        default_variant="swin2sr",
        description="Swin2SR upscaler",
    ),
    Signature(
        "swinir",
        "upscaler",
        None,
        UPSCALE_ROOTS,
        (
            Probe(_SWIN_BLOCK + "norm1.weight"),
            Probe(_SWIN_BLOCK + "mlp.fc1.bias"),
            Probe(_SWIN_BLOCK + "attn.relative_position_index"),
            Probe("patch_embed.proj.weight", absent=True),
            Probe("relative_position_index_SA", absent=True),
        ),
        default_variant="swinir",
        description="SwinIR upscaler",
    ),
    Signature(
        "dat",
        "upscaler",
        None,
        UPSCALE_ROOTS,
        (
            Probe("conv_first.weight"),
            Probe("before_RG.1.weight"),
            Probe("layers.0.blocks.0.attn.attns.0.rpe_biases"),
            Probe("layers.0.blocks.0.ffn.sg.conv.weight"),
            Probe("norm.weight"),
        ),
        default_variant="dat",
        description="DAT upscaler (Dual Aggregation Transformer)",
    ),
    Signature(
        "span",
        "upscaler",
        None,
        UPSCALE_ROOTS,
        (
            Probe("conv_1.sk.weight"),
            Probe("block_1.c1_r.sk.weight"),
            Probe("block_1.c1_r.eval_conv.weight"),
            Probe("conv_cat.weight"),
            Probe("upsampler.0.weight"),
        ),
        _pixelshuffle_scales("span", "conv_1.sk.weight", "upsampler.0.weight"),
        default_variant="span",
        description="SPAN upscaler",
    ),
    Signature(
        "omnisr",
        "upscaler",
        None,
        UPSCALE_ROOTS,
        (
            Probe("residual_layer.0.residual_layer.0.layer.0.fn.0.weight"),
            Probe("input.weight"),
            Probe("up.0.weight"),
        ),
        _pixelshuffle_scales("omnisr", "input.weight", "up.0.weight"),
        default_variant="omnisr",
        description="OmniSR upscaler",
    ),
    # SRVGGNetCompact (Real-ESRGAN's realesr-general / animevideo models): a plain sequence of 3x3
    # convs and PReLUs under ``body.`` (spandrel Compact). Its scale sits in the last conv, whose
    # index depends on the depth: not probed.
    Signature(
        "compact",
        "upscaler",
        None,
        UPSCALE_ROOTS,
        (
            Probe("body.0.weight", (None, None, 3, 3)),
            Probe("body.1.weight", (None,)),
            Probe("body.2.weight", (None, None, 3, 3)),
        ),
        default_variant="compact",
        description="Real-ESRGAN Compact upscaler (SRVGGNetCompact)",
    ),
)
