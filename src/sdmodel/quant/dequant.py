"""Exact dequantization: the values the reference loader computes, in numpy.

``out`` is the dtype the loader computes in (the ``--dtype`` of ``sdmodel convert``): ComfyUI and
comfy-kitchen dequantize as ``data.to(out) * scale.to(out)`` (fp8, comfy-kitchen
backends/eager/quantization.py ``dequantize_per_tensor_fp8``), so each operand is rounded to
``out`` and the product is rounded once. A product of two bf16 or fp16 values is exact in fp32,
so computing it in fp32 and rounding to ``out`` gives the same bits as torch's bf16/fp16 kernels.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import wait
from pathlib import Path
from typing import Any

import numpy as np

from sdmodel.dtypes import BF16_CHUNK, NUMPY_DTYPES, bf16_bits, dtype_name, round_bf16
from sdmodel.errors import ConversionError, ModelReadError
from sdmodel.formats.base import TensorSource
from sdmodel.i18n import Msg
from sdmodel.quant.ggml_quantize import worker_pool
from sdmodel.quant.storage import QuantTensor

OUT_DTYPES = ("F32", "BF16", "F16")
_F32 = np.dtype(np.float32)

# fp4 e2m1 code -> value (OCP MX spec; comfy-kitchen E2M1_LUT): sign bit 3.
E2M1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], dtype=np.float32)


def _round(a: np.ndarray, out: str) -> np.ndarray:
    """``a`` (fp32) rounded to ``out`` and back to fp32 (round to nearest even, as torch casts)."""
    if out == "F32":
        return a.astype(_F32, copy=False)
    return a.astype(NUMPY_DTYPES[out]).astype(_F32)


def _as_out(a: np.ndarray, out: str) -> np.ndarray:
    return a.astype(NUMPY_DTYPES[out], copy=False)


def _as_bits_out(a: np.ndarray, out: str) -> np.ndarray:
    """fp32 values in ``out``, BF16 as uint16 bits (by dtypes.round_bf16: no ml_dtypes needed)."""
    return bf16_bits(a) if out == "BF16" and a.dtype == _F32 else _as_out(a, out)


def _f32(a: np.ndarray) -> np.ndarray:
    if a.dtype.itemsize == 1 and a.dtype.kind not in "iub":  # fp8: a table lookup beats ml_dtypes' cast
        return per_code(a, lambda codes: codes.astype(_F32))
    return a.astype(_F32, copy=False)


_LOOKUP_STEP = 1 << 18  # elements looked up at a time: numpy widens the 1-byte indices to 8 bytes


def per_code(a: np.ndarray, f: Any) -> np.ndarray:
    """``f(a)`` for an elementwise ``f`` of 1-byte values: ``f`` computed once on each of the 256
    codes, then one table lookup per element (the same bits, several times faster on big weights),
    in cache-sized steps on the quantizer's worker threads."""
    table = f(np.arange(256, dtype=np.uint8).view(a.dtype))
    codes = a.view(np.uint8).reshape(-1)
    res = np.empty(a.shape, dtype=table.dtype)
    flat = res.reshape(-1)

    def run(lo: int) -> None:
        # mode="clip": no bounds check (a code is 0..255), no buffering of the output
        np.take(table, codes[lo : lo + _LOOKUP_STEP], out=flat[lo : lo + _LOOKUP_STEP], mode="clip")

    steps = range(0, codes.size, _LOOKUP_STEP)
    if len(steps) > 1:
        list(worker_pool().map(run, steps))
    elif codes.size:
        run(0)
    return res


def gguf_values(raw: np.ndarray, ggml_type: str) -> np.ndarray:
    """GGML block bytes -> fp32 values, by gguf-py (the GGML project's own Python package)."""
    from gguf import GGMLQuantizationType  # noqa: PLC0415 - gguf-py takes 0.2 s to import: only for GGUF blocks
    from gguf.quants import dequantize  # noqa: PLC0415

    return dequantize(raw, GGMLQuantizationType[ggml_type])


Q8_0_BYTES = 34  # a Q8_0 block: its fp16 scale d, then 32 int8 codes (GGML ggml-common.h block_q8_0)
_Q8_0_STEP = max(1, BF16_CHUNK // 32)  # blocks computed at a time: the fp32 values stay in the CPU cache
Q8_0_READ = 16 * _Q8_0_STEP  # blocks read from the file at a time (about 1 MB)


def q8_0(raw: np.ndarray, out: str) -> np.ndarray:
    """Q8_0 blocks (bytes) -> their values in ``out`` (flat; BF16 as uint16 bits), by
    :func:`q8_0_into`."""
    blocks = raw.reshape(-1, Q8_0_BYTES)
    res = _q8_0_result(blocks.shape[0], out)
    q8_0_into(blocks, res, out)
    return res


def _q8_0_result(n: int, out: str) -> np.ndarray:
    """The flat output of ``n`` blocks (BF16 as uint16 bits)."""
    return np.empty(n * 32, dtype=np.uint16 if out == "BF16" else NUMPY_DTYPES[out])


def q8_0_into(blocks: np.ndarray, res: np.ndarray, out: str) -> None:
    """The values of Q8_0 ``blocks`` (uint8, ``(n, 34)``) into ``res`` (flat, ``n * 32``; BF16
    as uint16 bits): ``code * d`` in fp32, as gguf-py's ``Q8_0.dequantize_blocks`` computes it
    (exact: 8 by 11 significant bits), then rounded once to ``out``; so the same bits as
    :func:`gguf_values` and a cast, computed over cache-sized chunks straight into ``res``
    (no full-size fp32 array)."""
    n = blocks.shape[0]
    codes = blocks[:, 2:].view(np.int8)
    scales = np.ascontiguousarray(blocks[:, :2]).view(np.float16).reshape(-1)
    finite = bool(np.isfinite(scales).all())  # then so are the values: no NaN to look for
    f = np.empty((min(n, _Q8_0_STEP), 32), dtype=_F32)
    scratch = np.empty(f.size, dtype=np.uint32)
    # As gguf-py and a cast: an infinite scale times code 0 is NaN, beyond fp16's range is infinite.
    with np.errstate(invalid="ignore", over="ignore"):
        for lo in range(0, n, _Q8_0_STEP):
            hi = min(n, lo + _Q8_0_STEP)
            dst = res[lo * 32 : hi * 32]
            v = dst.reshape(-1, 32) if out == "F32" else f[: hi - lo]
            np.copyto(v, codes[lo:hi], casting="unsafe")
            # The scales repeated to the values' shape: one flat multiply is about twice as fast
            # as numpy broadcasting a scale over each row of 32.
            v *= np.repeat(scales[lo:hi].astype(_F32), 32).reshape(-1, 32)
            if out == "BF16":
                round_bf16(v.reshape(-1), dst, scratch[: dst.size], finite)
            elif out != "F32":
                np.copyto(dst, v.reshape(-1), casting="unsafe")


def q8_0_file(path: Path, begin: int, n: int, out: str) -> np.ndarray | None:
    """:func:`q8_0` of the ``n`` blocks at byte ``begin`` of ``path``, Q8_0_READ blocks at a time,
    each read into a small buffer (no full-size copy of the stored bytes), on the quantizer's
    worker threads (one per core: numpy releases the GIL); None if the file ends first."""
    res = _q8_0_result(n, out)
    fd = os.open(path, os.O_RDONLY)

    def run(lo: int) -> bool:
        m = min(Q8_0_READ, n - lo)
        chunk = np.empty((m, Q8_0_BYTES), dtype=np.uint8)
        view = chunk.reshape(-1).data
        pos, done = begin + lo * Q8_0_BYTES, 0
        while done < len(view):
            got = os.preadv(fd, [view[done:]], pos + done)
            if got <= 0:
                return False
            done += got
        q8_0_into(chunk, res[lo * 32 : (lo + m) * 32], out)
        return True

    chunks = [worker_pool().submit(run, lo) for lo in range(0, n, Q8_0_READ)]
    try:
        ok = all([c.result() for c in chunks])
    finally:
        wait(chunks)  # none still reading when the file is closed
        os.close(fd)
    return res if ok else None


def unblock_scales(flat: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Undo cuBLAS's tiled block-scale layout (comfy-kitchen float_utils ``from_blocked``): rows
    padded to 128 and columns to 4, tiles of 128x4 row-major over tiles, and inside a tile the
    scale of (r, c) at byte (r % 32) * 16 + (r // 32) * 4 + c."""
    rp, cp = -(-rows // 128) * 128, -(-cols // 4) * 4
    t = flat.reshape(rp // 128, cp // 4, 32, 4, 4).transpose(0, 1, 3, 2, 4).reshape(rp // 128, cp // 4, 128, 4)
    return t.transpose(0, 2, 1, 3).reshape(rp, cp)[:rows, :cols]


def e8m0_values(bits: np.ndarray) -> np.ndarray:
    """E8M0 scale bytes -> fp32: 2**(e - 127), 255 is NaN (OCP MX spec)."""
    e = bits.view(np.uint8).astype(np.int32)
    out = np.ldexp(np.float32(1), e - 127).astype(_F32)
    out[e == 255] = np.nan
    return out


def scaled(values: np.ndarray, scale: np.ndarray, out: str) -> np.ndarray:
    """``values.to(out) * scale.to(out)`` (fp8 with a per-tensor or per-row scale)."""
    if values.dtype.itemsize == 1 and scale.size == 1:
        return per_code(values, lambda codes: _scaled(codes, scale, out))
    return _scaled(values, scale, out)


def _scaled(values: np.ndarray, scale: np.ndarray, out: str) -> np.ndarray:
    # fp8 and int8 values are exact in fp32, bf16 and fp16: no rounding to do on them.
    v = _f32(values) if values.dtype.itemsize == 1 else _round(values.astype(_F32), out)
    v *= _round(_f32(scale), out)  # v is a fresh array (a cast or a lookup): multiplied in place
    return _as_out(v, out)


def nvfp4(packed: np.ndarray, block_scales: np.ndarray, tensor_scale: np.ndarray, out: str) -> np.ndarray:
    """comfy-kitchen ``dequantize_nvfp4``: codes high nibble first, block scales (fp8 e4m3, one per
    16, tiled layout), ``total = tensor_scale.to(out) * block.to(out)``, ``value = code * total``."""
    rows = math.prod(packed.shape[:-1]) if packed.ndim > 1 else 1
    cols = packed.shape[-1] * 2
    p = packed.reshape(rows, -1)
    codes = np.empty((rows, cols), dtype=np.uint8)
    codes[:, 0::2] = p >> 4
    codes[:, 1::2] = p & 0x0F
    values = E2M1[codes].reshape(rows, cols // 16, 16)
    block = unblock_scales(block_scales.reshape(-1), rows, cols // 16)
    total = _round(_round(_f32(tensor_scale.reshape(())), out) * _round(_f32(block), out), out)
    return _as_out(values * total[..., None], out).reshape(rows, cols)


def mxfp8(data: np.ndarray, block_scales: np.ndarray, out: str) -> np.ndarray:
    """comfy-kitchen ``dequantize_mxfp8``: fp32 data times the E8M0 scale of its block of 32."""
    rows, cols = data.shape
    block = e8m0_values(unblock_scales(block_scales.view(np.uint8).reshape(-1), rows, cols // 32))
    values = _f32(data).reshape(rows, cols // 32, 32) * block[..., None]
    return _as_out(values.reshape(rows, cols), out)


def bnb_blockwise(codes: np.ndarray, code_map: np.ndarray, absmax: np.ndarray, block: int) -> np.ndarray:
    """bitsandbytes ``dequantize_blockwise``: ``code_map[code] * absmax[i // block]`` in fp32."""
    n = codes.size
    vals = code_map.astype(_F32)[codes.reshape(-1)]
    nblocks = -(-n // block)
    padded = np.zeros(nblocks * block, dtype=_F32)
    padded[:n] = vals
    return (padded.reshape(nblocks, block) * _f32(absmax).reshape(nblocks, 1)).reshape(-1)[:n]


def bnb_4bit(
    packed: np.ndarray,
    quant_map: np.ndarray,
    absmax: np.ndarray,
    block: int,
    numel: int,
    nested: tuple[np.ndarray, np.ndarray, int, float] | None = None,
    fp4: bool = False,
) -> np.ndarray:
    """bitsandbytes ``dequantize_4bit`` (NF4/FP4): two codes per byte, high nibble first;
    a nested absmax is itself blockwise-quantized (8-bit codes) plus an offset."""
    if nested is not None:
        n_absmax, n_map, n_block, offset = nested
        absmax = bnb_blockwise(absmax, n_map, n_absmax, n_block) + np.float32(offset)
    p = packed.reshape(-1)
    codes = np.empty(p.size * 2, dtype=np.uint8)
    codes[0::2] = p >> 4
    codes[1::2] = p & 0x0F
    code_map = quant_map.astype(_F32)
    if fp4:
        # bitsandbytes' FP4 kernels take the sign from bit 3 (code 8 is -0.0, not the map's 0.0).
        code_map = np.where(np.arange(16) >= 8, -np.abs(code_map), np.abs(code_map)).astype(_F32)
    return bnb_blockwise(codes[:numel], code_map, absmax, block)


_BNB_DTYPES = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}


def dequantize(source: TensorSource, qt: QuantTensor, out: str, bits: bool = False) -> np.ndarray:
    """The values of one quantized weight, in ``out`` (F32, BF16 or F16) and its model shape;
    ``bits``: BF16 values as their uint16 bits (what the engine passes on, engine._as_bits)."""
    values = _dequantize(source, qt, out)
    if bits:
        return values.view(np.uint16) if values.dtype.name == "bfloat16" else values
    return values.view(NUMPY_DTYPES["BF16"]) if out == "BF16" and values.dtype == np.uint16 else values


def _dequantize(source: TensorSource, qt: QuantTensor, out: str) -> np.ndarray:
    """:func:`dequantize`, BF16 values as ml_dtypes bfloat16 or as uint16 bits."""
    if out not in OUT_DTYPES:
        raise ConversionError(
            Msg("dequantizing gives {out_dtypes}, not {out}", out_dtypes=", ".join(OUT_DTYPES), out=out)
        )
    if qt.unsupported:
        raise ConversionError(
            Msg(
                "{path}: {name}: cannot dequantize {unsupported}",
                path=source.path,
                name=qt.name,
                unsupported=qt.unsupported,
            )
        )
    prefix = qt.name[: -len("weight")] if qt.name.endswith("weight") else qt.name + "."

    def side(suffix: str) -> np.ndarray:
        name = prefix + suffix
        if name not in source.tensors:
            raise ModelReadError(
                Msg(
                    "{path}: {name} needs {name2}, which is not in the file", path=source.path, name=qt.name, name2=name
                )
            )
        return source.read(name)

    if qt.scheme == "gguf" and qt.format == "Q8_0":
        # positional reads on both cores where the system has them (not Windows)
        rng = source.data_range(qt.data) if source.path.is_file() and hasattr(os, "preadv") else None
        n = math.prod(qt.shape) // 32
        if rng is not None and rng[1] - rng[0] == n * Q8_0_BYTES:
            values = q8_0_file(Path(source.path), rng[0], n, out)
            if values is not None:
                return values.reshape(qt.shape)
        # Not a plain file, or cut short: the reader reads it (and names what is missing).
        return q8_0(source.read(qt.data), out).reshape(qt.shape)
    data = source.read(qt.data)
    if qt.scheme == "gguf":
        return _as_bits_out(gguf_values(data, qt.format), out).reshape(qt.shape)
    if qt.scheme == "comfy_scaled_fp8":
        scale = side("scale_weight") if prefix + "scale_weight" in source.tensors else np.ones((), _F32)
        return scaled(data, scale.reshape(()) if scale.size == 1 else scale, out)
    if qt.scheme == "fp8_weight_scale":
        s = side("weight_scale")
        return scaled(data, s.reshape(()) if s.size == 1 else _rowwise(s, data), out)
    if qt.scheme == "musubi_fp8":
        return _musubi(data, side("scale_weight"), qt, out)
    if qt.scheme == "comfy_quant":
        return _comfy(qt, data, side, out)
    if qt.scheme == "bnb_4bit":
        state_dtype = _BNB_DTYPES.get(str(qt.param("dtype", "float32")).removeprefix("torch."), "F32")
        block = int(qt.param("blocksize"))  # type: ignore[call-overload]
        nested = None
        if qt.param("nested_blocksize") is not None:
            nested = (
                _bnb_side(source, qt, "nested_absmax"),
                _bnb_side(source, qt, "nested_quant_map"),
                int(qt.param("nested_blocksize")),  # type: ignore[call-overload]
                float(qt.param("nested_offset") or 0.0),  # type: ignore[arg-type]
            )
        values = bnb_4bit(
            data,
            _bnb_side(source, qt, "quant_map"),
            _bnb_side(source, qt, "absmax"),
            block,
            math.prod(qt.shape),
            nested,
            qt.format == "fp4",
        )
        # bitsandbytes computes in fp32 and returns the state's dtype; then the requested one.
        return _as_out(_as_out(values, state_dtype).reshape(qt.shape), out)
    raise ConversionError(
        Msg("{path}: {name}: no dequantization for {scheme}", path=source.path, name=qt.name, scheme=qt.scheme)
    )


def _bnb_side(source: TensorSource, qt: QuantTensor, suffix: str) -> np.ndarray:
    name = f"{qt.name}.{suffix}"
    if name not in source.tensors:
        raise ModelReadError(
            Msg("{path}: {name} needs {name2}, which is not in the file", path=source.path, name=qt.name, name2=name)
        )
    return source.read(name)


def _rowwise(scale: np.ndarray, data: np.ndarray) -> np.ndarray:
    return scale.reshape(data.shape[0], *([1] * (data.ndim - 1)))


def _musubi(data: np.ndarray, scale: np.ndarray, qt: QuantTensor, out: str) -> np.ndarray:
    """musubi-tuner: ``weight.to(scale.dtype) * scale`` (per tensor, row or block), in the scale's
    dtype, then cast to ``out``."""
    compute = dtype_name(scale.dtype)
    if compute not in OUT_DTYPES:
        compute = "F32"
    if qt.param("granularity") == "block":
        o, blocks = scale.shape[0], scale.shape[1]
        values = scaled(data.reshape(o, blocks, -1), scale, compute).reshape(data.shape)
    elif qt.param("granularity") == "row":
        values = scaled(data, _rowwise(scale, data), compute)
    else:
        values = scaled(data, scale.reshape(()), compute)
    return _as_out(values, out)


def _comfy(qt: QuantTensor, data: np.ndarray, side: Any, out: str) -> np.ndarray:
    fmt = qt.format
    if fmt in ("float8_e4m3fn", "float8_e5m2", "int8_tensorwise"):
        s = side("weight_scale")
        if fmt == "int8_tensorwise":
            # comfy-kitchen TensorWiseINT8Layout: qdata.to(orig_dtype) * scale, the fp32 scale
            # not rounded first (torch computes in fp32 and rounds the product once).
            if s.size == 1:
                scale = _f32(s).reshape(())
                return per_code(data, lambda codes: _as_out(_f32(codes) * scale, out)).reshape(qt.shape)
            return _as_out(_f32(data) * _rowwise(_f32(s), data), out).reshape(qt.shape)
        return scaled(data, s.reshape(()) if s.size == 1 else _rowwise(s, data), out).reshape(qt.shape)
    if fmt == "mxfp8":
        values = mxfp8(data, side("weight_scale"), out)
    else:  # nvfp4
        values = nvfp4(data, side("weight_scale"), side("weight_scale_2"), out)
    # Stored padded to whole blocks (storage.py _comfy_shape): crop to the layer's shape, as
    # comfy-kitchen's QuantizedTensor.dequantize does.
    rows, cols = qt.shape
    return np.ascontiguousarray(values[:rows, :cols])
