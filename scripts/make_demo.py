"""Write a small SD-1.5-shaped sample model for `make demo`: the real tensor names, real shapes for
the tensors identification looks at (others shrunk), a full EMA set, CLIP position ids broken the
way float merges break them, a junk key, and a v-prediction hint-free name."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.builders import arrays, layout, shrink, with_ema


def main(out_dir: str) -> None:
    from safetensors.numpy import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lay = with_ema(shrink(layout("sd15")))
    lay["embedding_manager.embedder.transformer.text_model.final_layer_norm.weight"] = ((8,), "F32")
    tensors = arrays(lay, seed=1)
    key = "cond_stage_model.transformer.text_model.embeddings.position_ids"
    ids = np.arange(77, dtype=np.float32)
    ids[[38, 57, 76]] -= np.float32(0.0025)  # what a float merge leaves: 75.9975 is read as 75
    tensors[key] = ids.reshape(1, 77)
    path = out / "sd15-demo.safetensors"
    save_file(tensors, str(path), metadata={"modelspec.title": "sdmodel demo"})
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "demo")
