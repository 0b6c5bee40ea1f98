"""Which VAE a checkpoint (or a standalone VAE file) holds: a fingerprint of a few small tensors."""

from __future__ import annotations

from typing import Any

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
# Fingerprint -> VAE name. Only VAEs we have hashed ourselves belong here; "unknown" otherwise.
KNOWN_VAES: dict[str, str] = {}


def identify_vae(source: TensorSource) -> dict[str, Any]:
    """Which VAE a checkpoint (or standalone VAE) holds, from a fingerprint of a few tensors."""
    for prefix in (*PART_PREFIXES["vae"], ""):
        keys = [prefix + k for k in VAE_FINGERPRINT_KEYS]
        if all(k in source.tensors for k in keys):
            fp = tensor_fingerprint(source, keys, strip=prefix)
            return {"present": True, "fingerprint": fp, "name": KNOWN_VAES.get(fp, "unknown")}
    return {"present": False, "fingerprint": None, "name": None}
