"""The Literal vocabularies agree with the tables that own the values, and ConvertOptions checks
every choice when made, naming the allowed values."""

from typing import get_args

import pytest

from sdmodel.dtypes import PRECISIONS
from sdmodel.errors import ConversionError
from sdmodel.formats.writers import OUTPUT_FORMATS
from sdmodel.identify import Identity
from sdmodel.plan import ConvertOptions
from sdmodel.registry.model import Network
from sdmodel.vocab import MODEL_KINDS, OutputFormat, Precision


def test_literals_match_their_tables():
    assert set(get_args(Precision)) == set(PRECISIONS)
    assert set(get_args(OutputFormat)) == set(OUTPUT_FORMATS)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("format", "onnx", "safetensors, ckpt or gguf"),
        ("dtype", "fp12", "fp16"),
        ("unet_dtype", "half", "bf16"),
        ("vae_dtype", "F16", "fp32"),
        ("te_dtype", "int8", "fp8_e4m3fn"),
        ("ema", "merge", "keep, drop or only"),
        ("part", "clip", "vae, unet, text_encoder, text_encoder_2"),
        ("prediction", "eps", "v or epsilon"),
    ],
)
def test_convert_options_rejects_unknown_values(field, value, message):
    with pytest.raises(ConversionError, match=message) as e:
        ConvertOptions(**{field: value})
    assert repr(value) in str(e.value)


def test_convert_options_accepts_every_allowed_value():
    for p in PRECISIONS:
        ConvertOptions(dtype=p, unet_dtype=p, vae_dtype=p, te_dtype=p)
    for mode in ("keep", "drop", "only"):
        ConvertOptions(ema=mode)


def test_identity_kind_is_checked_when_made():
    # every network a registry signature names is a kind, except "diffusion" (a checkpoint or a unet)
    assert set(get_args(Network)) - {"diffusion"} <= set(MODEL_KINDS)
    with pytest.raises(ValueError, match="checkpoint, unet"):
        Identity(kind="model")  # type: ignore[arg-type]
