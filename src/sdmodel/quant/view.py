"""A quantized file seen as the plain model it stands for: a TensorSource over another source.

Each quantized weight is listed once, under its own name and model shape, in the dtype it is
dequantized to; scales, quantization state and markers are consumed (not listed); plain tensors
pass through. Reading a weight reads its packed data and side tensors and dequantizes them
(``sdmodel.quant.dequant``), one weight at a time, so a conversion over this view streams.
"""

from __future__ import annotations

import numpy as np

from sdmodel.errors import ConversionError
from sdmodel.formats.base import TensorInfo, TensorSource
from sdmodel.quant.dequant import OUT_DTYPES, dequantize
from sdmodel.quant.storage import QuantLayout, analyze

QUANT_METADATA = frozenset({"_quantization_metadata"})
LLAMA_CPP_NAMES = ("blk.", "enc.blk.", "dec.blk.", "token_embd.", "output_norm.")


class DequantizedSource(TensorSource):
    """``source`` with every quantized weight dequantized to ``out`` (F32, BF16 or F16)."""

    def __init__(self, source: TensorSource, out: str, layout: QuantLayout | None = None) -> None:
        super().__init__(source.path)
        if out not in OUT_DTYPES:
            raise ConversionError(f"quantized weights dequantize to fp32, bf16 or fp16, not {out}")
        self.inner = source
        self.out = out
        self.layout = layout if layout is not None else analyze(source)
        bad = self.layout.unsupported()
        if bad:
            raise ConversionError(f"{source.path}: {bad[0].name}: cannot dequantize {bad[0].unsupported}")
        if source.format == "gguf" and any(n.startswith(LLAMA_CPP_NAMES) for n in source.tensors):
            raise ConversionError(
                f"{source.path}: a GGUF text encoder with llama.cpp tensor names (blk.N...): sdmodel does not map "
                "them back to the transformers names loaders read; use the original safetensors release"
            )
        self.format = source.format
        # Metadata that describes the quantization would mislabel the plain output: ComfyUI reads
        # _quantization_metadata as "these layers are quantized"; GGUF keys describe GGUF.
        self.metadata = (
            {} if source.format == "gguf" else {k: v for k, v in source.metadata.items() if k not in QUANT_METADATA}
        )
        self.extras = source.extras
        self.notes = source.notes
        tensors: dict[str, TensorInfo] = {}
        for name, info in source.tensors.items():
            if name in self.layout.consumed:
                continue
            qt = self.layout.tensors.get(name)
            tensors[name] = TensorInfo(name, out, qt.shape) if qt is not None else info
        self._tensors = tensors

    def read(self, name: str) -> np.ndarray:
        qt = self.layout.tensors.get(name)
        if qt is None:
            return self.inner.read(name)
        return dequantize(self.inner, qt, self.out)

    @property
    def size_bytes(self) -> int:
        return self.inner.size_bytes

    def close(self) -> None:
        self.inner.close()
