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
- DoRA (``dora_scale``): the merged weight ``W' = (W + dW) * (m (s / ||W + dW|| - 1) + 1)`` with the
  norm over the output axis (or the input axis when ``dora_scale`` is ``[1, in, ...]``) (LyCORIS
  ``apply_weight_decompose``).

OFT, BOFT, GLoRA and (IA)^3 are recognised but not merged (``UNSUPPORTED``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from sdmodel.errors import ConversionError
from sdmodel.i18n import Msg
from sdmodel.lora.keys import Target

Reader = Callable[[str], np.ndarray]
UNSUPPORTED = frozenset({"oft", "boft", "glora", "ia3", "norm", "set"})
EPS = float(np.finfo(np.float32).eps)


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
    name = target.tensors.get("alpha")
    return None if name is None else float(np.asarray(read(name), dtype=np.float64).reshape(-1)[0])


def raw_delta(target: Target, read: Reader) -> tuple[np.ndarray, float]:
    """(unscaled difference, alpha scale) of a target; shape as the algorithm makes it."""
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
    if algo == "full":
        return _f32(read, roles["diff"]), 1.0
    raise ConversionError(Msg("{stem}: merging {algo} is not supported", stem=target.stem, algo=algo.upper()))


def merge_into(weight: np.ndarray, target: Target, read: Reader, strength: float, swap: bool = False) -> np.ndarray:
    """``weight`` (float32, changed in place and returned) with the target merged at ``strength``."""
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
    if swap:  # stored as (shift, scale) in one naming and (scale, shift) in the other
        half = weight.shape[0] // 2
        diff = np.concatenate([diff[half:], diff[:half]])
    if "dora_scale" not in target.tensors:
        weight += np.float32(strength * scale) * diff
        return weight
    m = _f32(read, target.tensors["dora_scale"])
    merged = weight + np.float32(scale) * diff
    if m.shape[0] == merged.shape[0] and math.prod(m.shape[1:]) == 1:
        norm = np.linalg.norm(merged.reshape(merged.shape[0], -1), axis=1)
        norm = norm.reshape(merged.shape[0], *[1] * (merged.ndim - 1))
    else:
        norm = np.linalg.norm(np.moveaxis(merged, 1, 0).reshape(merged.shape[1], -1), axis=1)
        norm = norm.reshape(1, merged.shape[1], *[1] * (merged.ndim - 2))
    factor = m.reshape(norm.shape) / (norm + np.float32(EPS))
    if strength != 1:
        factor = np.float32(strength) * (factor - 1) + 1
    weight[...] = merged * factor
    return weight
