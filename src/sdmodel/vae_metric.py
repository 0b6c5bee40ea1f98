"""Which VAE a checkpoint carries: the A1111 Model Toolkit's VAE metric and its table of known VAEs.

The metric (arenasys/stable-diffusion-webui-model-toolkit, ``toolkit.py`` ``compute_metric``): round
every ``encoder.*``/``decoder.*`` tensor of the 4-channel LDM VAE to fp16, sum ``sigmoid(x) - 0.5``
over its values in fp32, add the tensors' sums, and compare with the sum of the SD 1.x VAE:
``n = int(|total / 17870.7051 - 1| * 10000)``, folded below 10000 by steps of 5000. The same file
publishes ``n`` for the VAEs people meet (``IDENTIFICATION["VAE"]``): 0 for the SD 1.x VAE (what
"no VAE" SD 1.x releases carry), 869 SD 2.x, 2982 NAI, 155 and 41 the two Waifu Diffusion VAEs.
It reads the whole VAE (80-160 MB): ``info`` computes it for one file, the library with ``--hash``.
Our own fingerprint (``hashing.tensor_fingerprint``) still serves duplicates.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from sdmodel.formats.base import TensorSource

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
