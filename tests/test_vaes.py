"""The Model Toolkit's VAE metric, checked against a direct computation of its published formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sdmodel.formats.base import DictSource
from sdmodel.vaes import BASELINE, KNOWN_VAES, fold, tensor_term, vae_metric


def published(tensors: dict[str, np.ndarray]) -> int:
    """toolkit.py compute_metric, VAE part, written out in torch as the toolkit does."""
    vae = 0
    for k, v in tensors.items():
        if "encoder." in k or "decoder." in k:
            t = torch.from_numpy(v).to(torch.float16).to(torch.float32)
            vae += torch.sum(torch.sigmoid(t) - 0.5)
    n = int(abs(vae / 17870.7051 - 1) * 10000)
    while n >= 10000:
        n -= 10000 // 2
    return n


def vae_like(seed: int, scale: float) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "first_stage_model.decoder.conv_in.weight": rng.normal(0.02, scale, (512, 4, 3, 3)).astype(np.float32),
        "first_stage_model.decoder.up.0.block.0.conv1.weight": rng.normal(0.1, scale, (128, 256, 3, 3)).astype(
            np.float32
        ),
        "first_stage_model.encoder.conv_in.weight": rng.normal(0.3, scale, (128, 3, 3, 3)).astype(np.float32),
        "first_stage_model.quant_conv.weight": rng.normal(5.0, 1.0, (8, 8, 1, 1)).astype(np.float32),
    }


@pytest.mark.parametrize(("seed", "scale"), [(0, 0.05), (1, 0.5), (2, 3.0)])
def test_metric_is_the_published_formula(seed: int, scale: float) -> None:
    arrays = vae_like(seed, scale)
    got = vae_metric(DictSource(arrays), "first_stage_model.")
    assert got is not None
    assert got.value == published({k: v for k, v in arrays.items() if "quant_conv" not in k})


def test_terms_round_to_fp16_first() -> None:
    x = np.array([1e-4, 0.1, 70000.0, -70000.0], dtype=np.float32)  # 70000 overflows fp16 to inf
    t = torch.from_numpy(x).to(torch.float16).to(torch.float32)
    assert float(tensor_term(x)) == pytest.approx(float(torch.sum(torch.sigmoid(t) - 0.5)), abs=1e-6)


def test_known_values_are_named() -> None:
    assert fold(BASELINE) == 0 and KNOWN_VAES[0].startswith("SD 1.x original VAE")
    assert fold(BASELINE * (1 + 2982 / 10000 + 1e-9)) == 2982
    assert fold(0.0) == 5000  # no known VAE


def test_only_a_4_channel_ldm_vae_has_the_metric() -> None:
    arrays = vae_like(0, 0.1)
    arrays["first_stage_model.decoder.conv_in.weight"] = np.zeros((512, 16, 3, 3), np.float32)
    assert vae_metric(DictSource(arrays), "first_stage_model.") is None
    assert vae_metric(DictSource(vae_like(0, 0.1)), "") is None


def test_identify_vae_names_a_known_vae_and_says_when_none_matches() -> None:
    from sdmodel.vaes import VAE_FINGERPRINT_KEYS, identify_vae

    prefix = "first_stage_model."
    arrays = {prefix + k: np.zeros((4, 4, 1, 1), np.float32) for k in VAE_FINGERPRINT_KEYS}
    arrays[prefix + "decoder.conv_in.weight"] = np.zeros((512, 4, 3, 3), np.float32)
    # 46,929 values of 2.0 contribute sigmoid(2) - 0.5 each: 17,870.4, within the metric's 1e-4 of
    # the SD 1.x VAE's published sum.
    arrays[prefix + "encoder.conv_in.weight"] = np.full((46929,), 2.0, np.float32)
    found = identify_vae(DictSource(arrays))
    assert found["metric"] == 0 and found["name"].startswith("SD 1.x original VAE")
    arrays[prefix + "encoder.conv_in.weight"] = np.full((46929,), 1.0, np.float32)
    found = identify_vae(DictSource(arrays))
    assert found["metric"] not in KNOWN_VAES and found["name"] == "unknown"
    skipped = identify_vae(DictSource(arrays), read_values=False)
    assert skipped["present"] and skipped["metric"] is None and skipped["name"] is None
