"""Real tensor names and shapes of diffusion models in the layouts ComfyUI-GGUF loads (original,
non-diffusers naming), for the GGUF and scaled-fp8 tests and benchmarks."""

from __future__ import annotations

from tests.builders import Layout


def flux_layout(double: int = 19, single: int = 38, dtype: str = "BF16", hidden: int = 3072) -> Layout:
    """FLUX.1-dev's transformer (black-forest-labs single-file layout): 11.9 billion values at full
    depth. Fewer blocks and a smaller ``hidden`` keep every name pattern with less data."""
    h, mlp = hidden, 4 * hidden
    lay: Layout = {}

    def linear(name: str, out: int, inp: int) -> None:
        lay[f"{name}.weight"] = ((out, inp), dtype)
        lay[f"{name}.bias"] = ((out,), dtype)

    linear("img_in", h, 64)
    linear("txt_in", h, 4096 if hidden == 3072 else hidden)
    for emb, width in (("time_in", 256), ("vector_in", 768), ("guidance_in", 256)):
        linear(f"{emb}.in_layer", h, width)
        linear(f"{emb}.out_layer", h, h)
    for i in range(double):
        for s in ("img", "txt"):
            p = f"double_blocks.{i}.{s}"
            linear(f"{p}_mod.lin", 6 * h, h)
            linear(f"{p}_attn.qkv", 3 * h, h)
            lay[f"{p}_attn.norm.query_norm.scale"] = ((128,), dtype)
            lay[f"{p}_attn.norm.key_norm.scale"] = ((128,), dtype)
            linear(f"{p}_attn.proj", h, h)
            linear(f"{p}_mlp.0", mlp, h)
            linear(f"{p}_mlp.2", h, mlp)
    for i in range(single):
        p = f"single_blocks.{i}"
        linear(f"{p}.linear1", 3 * h + mlp, h)
        linear(f"{p}.linear2", h, h + mlp)
        lay[f"{p}.norm.query_norm.scale"] = ((128,), dtype)
        lay[f"{p}.norm.key_norm.scale"] = ((128,), dtype)
        linear(f"{p}.modulation.lin", 3 * h, h)
    linear("final_layer.linear", 64, h)
    linear("final_layer.adaLN_modulation.1", 2 * h, h)
    return lay


def wan_layout(blocks: int = 2, dim: int = 5120, ffn: int = 13824, dtype: str = "BF16") -> Layout:
    """Wan 2.1 14B text-to-video (original layout), with its 5-D patch embedding."""
    lay: Layout = {
        "patch_embedding.weight": ((dim, 16, 1, 2, 2), dtype),
        "patch_embedding.bias": ((dim,), dtype),
        "text_embedding.0.weight": ((dim, 4096), dtype),
        "text_embedding.0.bias": ((dim,), dtype),
        "text_embedding.2.weight": ((dim, dim), dtype),
        "text_embedding.2.bias": ((dim,), dtype),
        "time_embedding.0.weight": ((dim, 256), dtype),
        "time_embedding.0.bias": ((dim,), dtype),
        "time_embedding.2.weight": ((dim, dim), dtype),
        "time_embedding.2.bias": ((dim,), dtype),
        "time_projection.1.weight": ((6 * dim, dim), dtype),
        "time_projection.1.bias": ((6 * dim,), dtype),
        "head.modulation": ((1, 2, dim), "F32"),
        "head.head.weight": ((64, dim), dtype),
        "head.head.bias": ((64,), dtype),
    }
    for i in range(blocks):
        p = f"blocks.{i}"
        lay[f"{p}.modulation"] = ((1, 6, dim), "F32")
        for attn in ("self_attn", "cross_attn"):
            for x in ("q", "k", "v", "o"):
                lay[f"{p}.{attn}.{x}.weight"] = ((dim, dim), dtype)
                lay[f"{p}.{attn}.{x}.bias"] = ((dim,), dtype)
            lay[f"{p}.{attn}.norm_q.weight"] = ((dim,), dtype)
            lay[f"{p}.{attn}.norm_k.weight"] = ((dim,), dtype)
        lay[f"{p}.norm3.weight"] = ((dim,), "F32")
        lay[f"{p}.norm3.bias"] = ((dim,), "F32")
        lay[f"{p}.ffn.0.weight"] = ((ffn, dim), dtype)
        lay[f"{p}.ffn.0.bias"] = ((ffn,), dtype)
        lay[f"{p}.ffn.2.weight"] = ((dim, ffn), dtype)
        lay[f"{p}.ffn.2.bias"] = ((dim,), dtype)
    return lay
