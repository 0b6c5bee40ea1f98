"""A quantized file seen as the plain model it stands for: a TensorSource over another source.

Each quantized weight is listed once, under its own name and model shape, in the dtype it is
dequantized to; scales, quantization state and markers are consumed (not listed); plain tensors
pass through. Reading a weight reads its packed data and side tensors and dequantizes them
(``sdmodel.quant.dequant``), one weight at a time, so a conversion over this view streams.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from sdmodel.errors import ConversionError
from sdmodel.formats.base import TensorInfo, TensorSource
from sdmodel.i18n import Msg
from sdmodel.quant.dequant import OUT_DTYPES, dequantize
from sdmodel.quant.storage import QuantLayout, analyze

QUANT_METADATA = frozenset({"_quantization_metadata"})
LLAMA_CPP_NAMES = ("blk.", "enc.blk.", "dec.blk.", "token_embd.", "output_norm.")


# llama.cpp tensor names -> the transformers names loaders read, applied in order as substring
# replacements (the mapping ComfyUI-GGUF's loader.py applies to GGUF text encoders).
T5_NAMES = (
    ("enc.", "encoder."),
    (".blk.", ".block."),
    ("token_embd", "shared"),
    ("output_norm", "final_layer_norm"),
    ("attn_q", "layer.0.SelfAttention.q"),
    ("attn_k", "layer.0.SelfAttention.k"),
    ("attn_v", "layer.0.SelfAttention.v"),
    ("attn_o", "layer.0.SelfAttention.o"),
    ("attn_norm", "layer.0.layer_norm"),
    ("attn_rel_b", "layer.0.SelfAttention.relative_attention_bias"),
    ("ffn_up", "layer.1.DenseReluDense.wi_1"),
    ("ffn_down", "layer.1.DenseReluDense.wo"),
    ("ffn_gate", "layer.1.DenseReluDense.wi_0"),
    ("ffn_norm", "layer.1.layer_norm"),
)
QWEN_NAMES = (
    ("blk.", "model.layers."),
    ("attn_norm", "input_layernorm"),
    ("attn_q_norm.", "self_attn.q_norm."),
    ("attn_k_norm.", "self_attn.k_norm."),
    ("attn_v_norm.", "self_attn.v_norm."),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_norm", "post_attention_layernorm"),
    ("token_embd", "model.embed_tokens"),
    ("output_norm", "model.norm"),
    ("output.weight", "lm_head.weight"),
)
GGUF_RENAMES = {
    "t5": T5_NAMES,
    "t5encoder": T5_NAMES,
    "qwen2vl": QWEN_NAMES,
    "qwen3": QWEN_NAMES,
    "qwen3vl": QWEN_NAMES,
    "llama": QWEN_NAMES,  # ComfyUI-GGUF's LLAMA_SD_MAP serves both
}
# llama.cpp's converter permutes the q/k rows of Llama models for its rotary layout; ComfyUI-GGUF's
# loader.py (llama_permute) undoes it with 32 query and 8 key/value heads (Llama 3 / Mistral).
LLAMA_HEADS = (32, 8)


def llama_unpermute(values: np.ndarray, heads: int) -> np.ndarray:
    """The rows of a q/k projection (weight or bias) in the transformers order (llama_permute)."""
    shape = values.shape
    return np.ascontiguousarray(
        values.reshape(heads, shape[0] // heads // 2, 2, *shape[1:]).swapaxes(1, 2).reshape(shape)
    )


def permuted_heads(source: TensorSource, names: dict[str, str]) -> dict[str, int] | Msg:
    """Our name -> the head count its rows are permuted by (Llama GGUF q/k projections), or why the
    permutation cannot be undone exactly."""
    if source.format != "gguf" or source.metadata.get("general.architecture") != "llama":
        return {}
    meta = source.metadata
    heads = (meta.get("llama.attention.head_count"), meta.get("llama.attention.head_count_kv"))
    if heads != tuple(str(h) for h in LLAMA_HEADS):
        return Msg(
            "a GGUF llama model with {query} query / {kv} key-value heads: ComfyUI-GGUF undoes the q/k row "
            "permutation for {llama_query} / {llama_kv} only",
            query=heads[0] or "?",
            kv=heads[1] or "?",
            llama_query=LLAMA_HEADS[0],
            llama_kv=LLAMA_HEADS[1],
        )
    out = {}
    for new in names.values():
        if new.endswith(("q_proj.weight", "q_proj.bias")):
            out[new] = LLAMA_HEADS[0]
        elif new.endswith(("k_proj.weight", "k_proj.bias")):
            out[new] = LLAMA_HEADS[1]
    return out


def model_names(source: TensorSource) -> dict[str, str] | Msg:
    """File name -> the name loaders use (GGUF text encoders carry llama.cpp names), or why the
    names cannot be given back."""
    names = list(source.tensors)
    if source.format != "gguf" or not any(n.startswith(LLAMA_CPP_NAMES) for n in names):
        return {n: n for n in names}
    arch = source.metadata.get("general.architecture", "")
    table = GGUF_RENAMES.get(arch)
    if table is None:
        return Msg("a GGUF {arch} model with llama.cpp tensor names: sdmodel does not map it back", arch=arch or "text")
    out = {}
    for n in names:
        new = n
        for old, repl in table:
            new = new.replace(old, repl)
        out[n] = new
    return out


class DequantizedSource(TensorSource):
    """``source`` with every quantized weight dequantized to ``out`` (F32, BF16 or F16), under the
    names loaders use. ``strict=False`` lists a file sdmodel cannot dequantize too (for
    identification): its unsupported weights keep their stored form and fail when read."""

    def __init__(self, source: TensorSource, out: str, layout: QuantLayout | None = None, strict: bool = True) -> None:
        super().__init__(source.path)
        if out not in OUT_DTYPES:
            raise ConversionError(Msg("quantized weights dequantize to fp32, bf16 or fp16, not {out}", out=out))
        self.inner = source
        self.out = out
        self.layout = layout if layout is not None else analyze(source)
        bad = self.layout.unsupported()
        if bad and strict:
            raise ConversionError(
                Msg(
                    "{path}: {name}: cannot dequantize {unsupported}",
                    path=source.path,
                    name=bad[0].name,
                    unsupported=bad[0].unsupported,
                )
            )
        names = model_names(source)
        heads = permuted_heads(source, names) if not isinstance(names, Msg) else {}
        if isinstance(heads, Msg):
            names = heads
        if isinstance(names, Msg):
            if strict:
                raise ConversionError(
                    Msg("{path}: {names}; use the original safetensors release", path=source.path, names=names)
                )
            names = {n: n for n in source.tensors}
        self.heads: dict[str, int] = heads if isinstance(heads, dict) else {}
        self.format = source.format
        # Metadata that describes the quantization would mislabel the plain output: ComfyUI reads
        # _quantization_metadata as "these layers are quantized"; GGUF keys describe GGUF.
        self.metadata = (
            {} if source.format == "gguf" else {k: v for k, v in source.metadata.items() if k not in QUANT_METADATA}
        )
        self.extras = source.extras
        self.notes = source.notes
        self.inner_names: dict[str, str] = {}  # our name -> the file's
        tensors: dict[str, TensorInfo] = {}
        for name, info in source.tensors.items():
            if name in self.layout.consumed:
                continue
            qt = self.layout.tensors.get(name)
            new = names[name]
            usable = qt is not None and not qt.unsupported
            tensors[new] = TensorInfo(new, out, qt.shape) if usable and qt else replace(info, name=new)
            self.inner_names[new] = name
        self._tensors = tensors

    def read(self, name: str) -> np.ndarray:
        return self._read(name, bits=False)

    def read_bits(self, name: str) -> np.ndarray:
        return self._read(name, bits=True)

    def _read(self, name: str, bits: bool) -> np.ndarray:
        inner = self.inner_names[name]
        qt = self.layout.tensors.get(inner)
        if qt is None:
            values = self.inner.read_bits(inner) if bits else self.inner.read(inner)
        else:
            values = dequantize(self.inner, qt, self.out, bits)
        return llama_unpermute(values, self.heads[name]) if name in self.heads else values

    def data_range(self, name: str) -> tuple[int, int] | None:
        """A plain tensor's bytes in the file (the engine reads those directly; not a permuted one)."""
        inner = self.inner_names[name]
        if inner in self.layout.tensors or name in self.heads:
            return None
        return self.inner.data_range(inner)

    @property
    def size_bytes(self) -> int:
        return self.inner.size_bytes

    def close(self) -> None:
        self.inner.close()
