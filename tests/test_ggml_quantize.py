"""GGML block quantizers: bytes identical to GGML's own C reference (compiled for the tests) and to
gguf-py's quantizer, on random and adversarial rows."""

from __future__ import annotations

import gguf
import numpy as np
import pytest

from sdmodel.quant.ggml_quantize import BLOCKS, QUANT_TYPES, quantize, row_bytes
from tests.ggml_reference import FUNCTIONS, Reference, build

N = 256 * 96


@pytest.fixture(scope="session")
def ggml() -> Reference:
    return Reference(build())


def _cases() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1234)
    f32 = np.float32
    spikes = (rng.standard_normal(N) * 0.01).astype(f32)
    spikes[rng.integers(0, N, 40)] = rng.choice([-30.0, 30.0], 40)
    bf16 = (rng.standard_normal(N).astype(f32) * 0.05).view(np.uint32) & np.uint32(0xFFFF0000)
    signed_zeros = np.where(rng.random(N) < 0.5, f32(0), f32(-0.0)).astype(f32)
    mixed = rng.standard_normal(N).astype(f32)
    mixed[: N // 2] = 0  # whole zero blocks next to ordinary ones
    return {
        "normal": (rng.standard_normal(N) * 0.02).astype(f32),
        "heavy tails": (rng.standard_t(2, N) * rng.uniform(1e-4, 1, N)).astype(f32),
        "zeros": np.zeros(N, f32),
        "signed zeros": signed_zeros,
        "constant": np.full(N, 0.37, f32),
        "negative constant": np.full(N, -0.37, f32),
        "tiny": (rng.standard_normal(N) * 1e-30).astype(f32),
        "huge range": (rng.standard_normal(N) * np.exp(rng.uniform(-25, 25, N))).astype(f32),
        "large": (rng.standard_normal(N) * 3e4).astype(f32),
        "sparse": np.where(rng.random(N) < 0.05, rng.standard_normal(N), 0).astype(f32),
        "small integers": rng.integers(-3, 4, N).astype(f32),
        "all positive": (rng.random(N) + 1).astype(f32),
        "all negative": (-rng.random(N) - 5).astype(f32),
        "spikes": spikes,
        "bf16 values": bf16.view(f32),
        "ties": (rng.integers(-16, 17, N) * 0.5).astype(f32),
        "zero blocks and data": mixed,
    }


CASES = _cases()


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("qtype", list(FUNCTIONS))
def test_blocks_identical_to_ggml(ggml: Reference, qtype: str, case: str) -> None:
    x = CASES[case]
    expected = ggml.quantize(x, qtype)
    got = quantize(x, qtype, threads=1).reshape(-1)  # type: ignore[arg-type]
    if not np.array_equal(got, expected):
        size = FUNCTIONS[qtype][2]
        bad = np.nonzero((got.reshape(-1, size) != expected.reshape(-1, size)).any(axis=1))[0]
        pytest.fail(f"{qtype} {case}: {len(bad)} of {len(expected) // size} blocks differ, first {bad[:5]}")


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "F16", "BF16"])
def test_identical_to_gguf_py(qtype: str) -> None:
    x = CASES["heavy tails"].reshape(-1, 512)
    expected = gguf.quants.quantize(x, gguf.GGMLQuantizationType[qtype])
    assert np.array_equal(quantize(x, qtype).view(np.uint8), expected.view(np.uint8))  # type: ignore[arg-type]


@pytest.mark.parametrize("qtype", [q for q in QUANT_TYPES if q not in ("F32", "F16", "BF16")])
def test_threads_and_shapes(qtype: str) -> None:
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((3, 5, 512 * 160)) * 0.1).astype(np.float32)  # several chunks per call
    one = quantize(x, qtype, threads=1)  # type: ignore[arg-type]
    two = quantize(x, qtype, threads=2)  # type: ignore[arg-type]
    assert one.shape == (3, 5, row_bytes(qtype, x.shape[-1]))  # type: ignore[arg-type]
    assert np.array_equal(one, two)
    # dequantized by gguf-py, the values come back within the type's error
    back = gguf.quants.dequantize(one, gguf.GGMLQuantizationType[qtype])
    assert back.shape == x.shape
    assert np.sqrt(np.mean((back - x) ** 2)) < 0.4 * np.sqrt(np.mean(x**2))


def test_other_input_dtypes_are_exact() -> None:
    import ml_dtypes

    for case in ("normal", "signed zeros", "huge range", "ties"):  # bf16 is widened by a bit shift
        x = CASES[case].astype(ml_dtypes.bfloat16)
        for qtype in ("Q8_0", "Q4_K", "BF16", "F16", "F32"):
            with np.errstate(over="ignore"):  # "huge range" overflows F16 (to infinity, as GGML)
                want = quantize(x.astype(np.float32), qtype)
                assert np.array_equal(quantize(x, qtype), want), (case, qtype)
                assert np.array_equal(quantize(x.view(np.uint16), qtype), want), (case, qtype)  # bf16 bits
    h = CASES["normal"].astype(np.float16)
    assert np.array_equal(quantize(h, "Q8_0"), quantize(h.astype(np.float32), "Q8_0"))


def test_row_length_must_fit_the_block() -> None:
    with pytest.raises(ValueError, match="blocks of 256"):
        quantize(np.zeros((2, 320), np.float32), "Q4_K")
    with pytest.raises(ValueError, match="unknown GGML type"):
        quantize(np.zeros(32, np.float32), "Q7_K")  # type: ignore[arg-type]
    assert BLOCKS["Q4_K"] == (256, 144)


@pytest.mark.parametrize("qtype", list(FUNCTIONS))
def test_zero_chunks_take_the_shortcut_with_the_same_bytes(ggml: Reference, qtype: str) -> None:
    x = np.zeros(256 * 1100, np.float32)  # more than one chunk of zeros, then data
    x[-256:] = np.linspace(-1, 1, 256)
    assert np.array_equal(quantize(x, qtype).reshape(-1), ggml.quantize(x, qtype))  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("qtype", ["Q4_K", "Q8_0", "F16", "BF16", "F32"])
def test_nan_and_infinity_are_refused(qtype: str, bad: float) -> None:
    import ml_dtypes

    from sdmodel.quant.ggml_quantize import NonFiniteError

    x = np.ones(512, np.float32)
    x[300] = bad
    for values in (x, x.astype(ml_dtypes.bfloat16), x.astype(ml_dtypes.bfloat16).view(np.uint16)):
        with pytest.raises(NonFiniteError):
            quantize(values, qtype)  # type: ignore[arg-type]


def test_type_ids_are_ggmls() -> None:
    from sdmodel.quant.ggml_quantize import GGML_TYPE_IDS

    for name, number in GGML_TYPE_IDS.items():
        assert gguf.GGMLQuantizationType[name] == number
        assert gguf.constants.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[name]] == BLOCKS[name]
