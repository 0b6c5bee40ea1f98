"""The weight change of one LoRA target, computed in float32 as the reference loaders compute it.

- LoRA / LoCon (kohya, PEFT): ``up @ down`` (a ``lora_mid`` Tucker core contracted in between),
  scaled by ``alpha / rank`` when the file stores an alpha, 1 when it does not (ComfyUI
  ``comfy/weight_adapter/lora.py``; PEFT files store none: their scale is carried in ``alpha``
  entries we write when converting).
- LoHa: ``(w1a @ w1b) * (w2a @ w2b)`` (Tucker cores ``hada_t1``/``hada_t2`` for convs), scale
  ``alpha / w1b.rows`` (LyCORIS ``lycoris/modules/loha.py``, ComfyUI ``loha.py``).
- LoKr: ``kron(w1, w2)`` with either factor possibly ``a @ b`` (``lokr_t2`` core for convs); scale
  ``alpha / rank`` only when a factor is low-rank, else 1 (ComfyUI ``lokr.py``).
- Full (``diff``/``diff_b``): the difference itself.
- DoRA as LyCORIS stores it (``dora_scale``): the merged weight ``W' = (W + dW) * (k (m / ||W + dW|| - 1) + 1)``
  at strength ``k``, with the norm over the output axis (one per output row when ``dora_scale`` is
  ``[out, 1, ...]``, LyCORIS ``wd_on_out``) or the input axis (one per column when it is ``[1, in, ...]``,
  older LyCORIS files) (LyCORIS ``apply_weight_decompose``).
- DoRA as PEFT stores it (``lora_magnitude_vector``, ``[out]``, ``[1, out, 1, 1]`` for convs): always one
  norm per output row, ``W' = m * (W + s dW) / ||W + s dW||`` with no epsilon (PEFT
  ``tuners/lora/dora.py`` ``get_weight_norm`` and the DoRA merge of ``tuners/lora/layer.py``; the norm is
  detached there, which only matters for training). The strength multiplies ``s``, as diffusers'
  ``fuse_lora(lora_scale=)`` and ``set_adapters`` do through PEFT's ``scaling``: the magnitude applies
  whatever the strength, as it does in diffusers.

OFT, BOFT, GLoRA and (IA)^3 are recognised but not merged (``UNSUPPORTED``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from sdmodel.errors import ConversionError
from sdmodel.i18n import Msg
from sdmodel.lora.keys import Target
from sdmodel.lora.namings import swap_halves

Reader = Callable[[str], np.ndarray]
UNSUPPORTED = frozenset({"oft", "boft", "glora", "ia3", "norm", "set"})
EPS = float(np.finfo(np.float32).eps)
BLOCK = 1 << 22  # values of a low-rank difference computed at once (16 MB of float32; smaller blocks cost BLAS calls)


def _f32(read: Reader, name: str) -> np.ndarray:
    return np.asarray(read(name), dtype=np.float32)


def _mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[0], -1) @ b.reshape(b.shape[0], -1)


def _tucker(t: np.ndarray, b: np.ndarray, a: np.ndarray) -> np.ndarray:
    """ComfyUI's ``einsum('i j k l, j r, i p -> p r k l', t, b, a)`` (LoHa/LoKr conv cores)."""
    return np.einsum("ijkl,jr,ip->prkl", t, b, a)


def alpha_scale(alpha: float | None, rank: int | None) -> float:
    return 1.0 if alpha is None or not rank else alpha / rank


def read_alpha(target: Target, read: Reader) -> float | None:
    """The target's alpha tensor, else the alpha its file's PEFT metadata gives it, else None."""
    name = target.tensors.get("alpha")
    return target.peft_alpha if name is None else float(np.asarray(read(name), dtype=np.float64).reshape(-1)[0])


def raw_delta(target: Target, read: Reader) -> tuple[np.ndarray, float]:
    """(unscaled difference, alpha scale) of a target; shape as the algorithm makes it. The array is
    the caller's own (never a view of the file)."""
    roles, algo = target.tensors, target.algorithm
    alpha = read_alpha(target, read)
    if algo in ("lora", "locon"):
        up, down = _f32(read, roles["up"]), _f32(read, roles["down"])
        rank = down.shape[0]
        if "mid" in roles:  # Tucker: down [r, in, 1, 1], mid [r, r, kh, kw], up [out, r, 1, 1]
            mid = _f32(read, roles["mid"])
            d = np.einsum("mnhw,im,nj->ijhw", mid, up.reshape(up.shape[0], -1), down.reshape(rank, -1))
        else:
            d = _mm(up, down)
            if down.ndim == 4:  # LoCon conv: down [r, in, kh, kw]
                d = d.reshape(up.shape[0], *down.shape[1:])
        return d, alpha_scale(alpha, rank)
    if algo == "loha":
        w1a, w1b, w2a, w2b = (_f32(read, roles[r]) for r in ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"))
        if "hada_t1" in roles:
            m1 = _tucker(_f32(read, roles["hada_t1"]), w1b, w1a)
            m2 = _tucker(_f32(read, roles["hada_t2"]), w2b, w2a)
        else:
            m1, m2 = w1a @ w1b, w2a @ w2b
        return m1 * m2, alpha_scale(alpha, w1b.shape[0])
    if algo == "lokr":
        rank = None
        if "lokr_w1" in roles:
            w1 = _f32(read, roles["lokr_w1"])
        else:
            w1b = _f32(read, roles["lokr_w1_b"])
            w1, rank = _f32(read, roles["lokr_w1_a"]) @ w1b, w1b.shape[0]
        if "lokr_w2" in roles:
            w2 = _f32(read, roles["lokr_w2"])
        else:
            w2a, w2b = _f32(read, roles["lokr_w2_a"]), _f32(read, roles["lokr_w2_b"])
            rank = w2b.shape[0]
            w2 = _tucker(_f32(read, roles["lokr_t2"]), w2b, w2a) if "lokr_t2" in roles else w2a @ w2b
        if w2.ndim == 4:
            w1 = w1[:, :, None, None]
        return np.kron(w1, w2), alpha_scale(alpha, rank)
    if algo == "full":  # a copy: callers scale the difference in place
        return np.array(read(roles["diff"]), dtype=np.float32), 1.0
    raise ConversionError(Msg("{stem}: merging {algo} is not supported", stem=target.stem, algo=algo.upper()))


def _add_low_rank(weight: np.ndarray, target: Target, read: Reader, strength: float, swap: bool) -> bool:
    """A plain LoRA/LoCon ``up @ down`` added to ``weight`` a block of rows at a time, so the whole
    difference (as large as the weight, in float32) never exists at once; False when the target is
    not one (Tucker core, DoRA, other shapes): the caller computes it whole."""
    roles = target.tensors
    if target.algorithm not in ("lora", "locon") or "mid" in roles or target.dora or not weight.flags.c_contiguous:
        return False
    up, down = _f32(read, roles["up"]), _f32(read, roles["down"])
    rows, rank = weight.shape[0], down.shape[0]
    up, down = up.reshape(up.shape[0], -1), down.reshape(rank, -1)
    if up.shape != (rows, rank) or rows * down.shape[1] != weight.size:
        return False
    if swap:
        up = swap_halves(up)  # swapping the difference's rows is swapping up's
    factor = np.float32(strength * alpha_scale(read_alpha(target, read), rank))
    flat = weight.reshape(rows, -1)
    step = max(1, BLOCK // flat.shape[1])
    buf = np.empty((min(step, rows), flat.shape[1]), dtype=np.float32)  # reused: no page faults per block
    for lo in range(0, rows, step):
        part = np.matmul(up[lo : lo + step], down, out=buf[: min(step, rows - lo)])
        part *= factor
        flat[lo : lo + step] += part
    return True


def merge_into(weight: np.ndarray, target: Target, read: Reader, strength: float, swap: bool = False) -> np.ndarray:
    """``weight`` (float32, changed in place and returned) with the target merged at ``strength``."""
    if _add_low_rank(weight, target, read, strength, swap):
        return weight
    diff, scale = raw_delta(target, read)
    if diff.size != weight.size:
        raise ConversionError(
            Msg(
                "{stem}: the LoRA changes {size} values, the model weight has {size2} ({shape})",
                stem=target.stem,
                size=diff.size,
                size2=weight.size,
                shape=list(weight.shape),
            )
        )
    diff = diff.reshape(weight.shape)
    if swap:
        diff = swap_halves(diff)
    if "magnitude" in target.tensors:
        return _peft_dora(weight, diff, _f32(read, target.tensors["magnitude"]), strength * scale, target.stem, swap)
    if "dora_scale" not in target.tensors:
        diff *= np.float32(strength * scale)
        weight += diff
        return weight
    m = _f32(read, target.tensors["dora_scale"])
    merged = weight + np.float32(scale) * diff
    if m.shape[0] == merged.shape[0] and math.prod(m.shape[1:]) == 1:
        norm = np.linalg.norm(merged.reshape(merged.shape[0], -1), axis=1)
        norm = norm.reshape(merged.shape[0], *[1] * (merged.ndim - 1))
        if swap:
            m = swap_halves(m)
    else:
        norm = np.linalg.norm(np.moveaxis(merged, 1, 0).reshape(merged.shape[1], -1), axis=1)
        norm = norm.reshape(1, merged.shape[1], *[1] * (merged.ndim - 2))
    factor = m.reshape(norm.shape) / (norm + np.float32(EPS))
    if strength != 1:
        factor = np.float32(strength) * (factor - 1) + 1
    weight[...] = merged * factor
    return weight


def _peft_dora(weight: np.ndarray, diff: np.ndarray, m: np.ndarray, scale: float, stem: str, swap: bool) -> np.ndarray:
    """PEFT's DoRA merge: ``W' = m / ||W + s dW|| * (W + s dW)``, one norm and one magnitude per output row."""
    rows = weight.shape[0]
    if m.size != rows:
        raise ConversionError(
            f"{stem}: the DoRA magnitude (lora_magnitude_vector) has {m.size} values, "
            f"the model weight {rows} output rows ({list(weight.shape)})"
        )
    m = m.reshape(rows)
    if swap:
        m = swap_halves(m)
    diff *= np.float32(scale)
    weight += diff
    norm = np.linalg.norm(weight.reshape(rows, -1), axis=1)
    if not norm.all():
        raise ConversionError(
            Msg("{stem}: DoRA divides by the norm of output row {row}, which is 0", stem=stem, row=int(np.argmin(norm)))
        )
    weight *= (m / norm).reshape(rows, *[1] * (weight.ndim - 1))
    return weight
