"""Which VAE a checkpoint (or a standalone VAE file) holds.

Two measures. Our fingerprint of a few small tensors serves duplicates. The name comes from the
A1111 Model Toolkit's VAE metric (arenasys/stable-diffusion-webui-model-toolkit, ``toolkit.py``
``compute_metric``): round every ``encoder.*``/``decoder.*`` tensor of the 4-channel LDM VAE to fp16,
sum ``sigmoid(x) - 0.5`` over its values in fp32, add the tensors' sums, and compare with the sum of
the SD 1.x VAE: ``n = int(|total / 17870.7051 - 1| * 10000)``, folded below 10000 by steps of 5000.
The same file publishes ``n`` for the VAEs people meet (``IDENTIFICATION["VAE"]``): 0 for the SD 1.x
VAE (what "no VAE" SD 1.x releases carry), 869 SD 2.x, 2982 NAI, 155 and 41 the two Waifu Diffusion
VAEs. The metric reads the whole VAE (80-340 MB): ``info`` computes it, the library with ``--hash``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sdmodel.formats.base import TensorSource
from sdmodel.hashing import tensor_fingerprint
from sdmodel.parts import PART_PREFIXES

# Tensors fingerprinted to tell which VAE is baked in: the decoder output and the latent convs,
# which differ between the VAEs people bake (ft-MSE, ft-EMA, SDXL...), and are small to read.
VAE_FINGERPRINT_KEYS = (
    "decoder.conv_out.weight",
    "decoder.conv_out.bias",
    "decoder.norm_out.weight",
    "post_quant_conv.weight",
    "quant_conv.weight",
)
BASELINE = 17870.7051
SCALE = 10000
# The Model Toolkit's published values -> what to tell the user.
KNOWN_VAES: dict[int, str] = {
    0: "SD 1.x original VAE (what 'no VAE' SD 1.x releases carry)",
    869: "SD 2.x VAE",
    2982: "NAI VAE (NovelAI / Anything)",
    155: "Waifu Diffusion VAE v1",
    41: "Waifu Diffusion VAE v2",
}


@dataclass(frozen=True)
class VaeMetric:
    """The metric of a VAE and the known VAE it names (None: no known VAE matches)."""

    value: int
    total: float
    name: str | None


def metric_keys(names: Iterable[str], prefix: str) -> list[str]:
    """The tensors the metric sums: the VAE's ``encoder.*`` and ``decoder.*`` (not the quant convs)."""
    return [n for n in names if n.startswith((prefix + "encoder.", prefix + "decoder."))]


def tensor_term(values: np.ndarray) -> np.float32:
    """``sum(sigmoid(x) - 0.5)`` of one tensor, its values rounded to fp16 first, in fp32."""
    with np.errstate(over="ignore"):  # values beyond fp16 become inf, as torch's .half() makes them
        x = np.asarray(values).astype(np.float16).astype(np.float32)
        s = np.float32(1.0) / (np.float32(1.0) + np.exp(-x))
    return np.float32((s - np.float32(0.5)).sum(dtype=np.float32))


def fold(total: float) -> int:
    n = int(abs(total / BASELINE - 1) * SCALE)
    while n >= SCALE:
        n -= SCALE // 2
    return n


def vae_metric(source: TensorSource, prefix: str) -> VaeMetric | None:
    """The metric of the VAE stored under ``prefix`` (``first_stage_model.`` or ``""``), or None when
    the file has no 4-channel LDM-named VAE there."""
    keys = metric_keys(source.tensors, prefix)
    conv_in = source.tensors.get(prefix + "decoder.conv_in.weight")
    if not keys or conv_in is None or conv_in.shape[1:2] != (4,):
        return None
    total = np.float32(0.0)
    for key in keys:
        total = np.float32(total + tensor_term(source.read(key)))
    value = fold(float(total))
    return VaeMetric(value, float(total), KNOWN_VAES.get(value))


def identify_vae(source: TensorSource, *, read_values: bool = True) -> dict[str, Any]:
    """Which VAE a checkpoint (or standalone VAE) holds: our fingerprint, and the Model Toolkit's
    metric with the known VAE it names ("unknown" when none matches). ``read_values=False`` skips
    the metric, which reads the whole VAE (name and metric are then None)."""
    for prefix in (*PART_PREFIXES["vae"], ""):
        keys = [prefix + k for k in VAE_FINGERPRINT_KEYS]
        if all(k in source.tensors for k in keys):
            fp = tensor_fingerprint(source, keys, strip=prefix)
            found = vae_metric(source, prefix) if read_values else None
            name = (found.name or "unknown") if found else ("unknown" if read_values else None)
            return {"present": True, "fingerprint": fp, "metric": found.value if found else None, "name": name}
    return {"present": False, "fingerprint": None, "metric": None, "name": None}
