"""Write a small SD-1.5-shaped sample model for `make demo`: the real tensor names, real shapes for
the tensors identification looks at (others shrunk), a full EMA set, CLIP position ids broken the
way float merges break them, a junk key, and a v-prediction hint-free name."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from sdmodel.dtypes import NUMPY_DTYPES, is_float
from sdmodel.parts import UNET_PREFIX, ema_key
from sdmodel.registry import probe_suffixes

# The tensor names, shapes and dtypes of the SD 1.5 release (the test suite's copy of that layout).
LAYOUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "layouts" / "sd15.json"
LIMIT = 16  # each dimension at most this, except for the tensors identification looks at


def demo_arrays(seed: int) -> dict[str, np.ndarray]:
    """SD 1.5's tensors, small, plus a full EMA set; plausible random values."""
    raw = json.loads(LAYOUT.read_text())["tensors"]
    keep = (*probe_suffixes(), "position_ids")
    lay = {
        k: (s if k.endswith(keep) or math.prod(s) <= LIMIT * LIMIT else [min(d, LIMIT) for d in s], d)
        for k, (s, d) in raw.items()
    }
    lay |= {ema_key(k): v for k, v in lay.items() if k.startswith(UNET_PREFIX)}
    lay |= {"model_ema.decay": ([], "F32"), "model_ema.num_updates": ([], "I32")}
    rng = np.random.default_rng(seed)
    out = {}
    for k, (shape, dtype) in lay.items():
        if "position_ids" in k:
            a = np.arange(math.prod(shape)).reshape(shape)
        elif is_float(dtype):
            a = 0.02 * rng.standard_normal(shape)
        else:
            a = rng.integers(0, 100, size=shape)
        out[k] = np.asarray(a).astype(NUMPY_DTYPES[dtype])
    return out


def main(out_dir: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = demo_arrays(seed=1)
    tensors["embedding_manager.embedder.transformer.text_model.final_layer_norm.weight"] = np.ones(8, np.float32)
    key = "cond_stage_model.transformer.text_model.embeddings.position_ids"
    ids = np.arange(77, dtype=np.float32)
    ids[[38, 57, 76]] -= np.float32(0.0025)  # what a float merge leaves: 75.9975 is read as 75
    tensors[key] = ids.reshape(1, 77)
    path = out / "sd15-demo.safetensors"
    save_file(tensors, str(path), metadata={"modelspec.title": "sdmodel demo"})
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "demo")
