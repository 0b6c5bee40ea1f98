"""The diffusers <-> single-file LoRA names of each DiT family, checked against the real key lists of
both layouts of its releases (tests/data/layouts): every weight a LoRA can target maps to a weight of
the other layout with a fitting shape, both ways, and kohya's flattened names read back exactly."""

from __future__ import annotations

import gzip
import json
from functools import cache
from pathlib import Path

import pytest

from sdmodel.lora.convert import unflatten
from sdmodel.lora.namings import NAMES

LAYOUTS = Path(__file__).parent / "data" / "layouts"
ROOTS = ("model.diffusion_model.", "diffusion_model.")

PAIRS = [
    ("flux", "families/flux_dev.comfy", "families/flux_dev.diffusers"),
    ("flux", "families/flux_fill.comfy", "families/flux_fill.diffusers"),
    ("chroma", "families/chroma.comfy", "families/chroma.diffusers"),
    ("flux2", "families/flux2_dev.original", "families/flux2_dev.diffusers"),
    ("flux2", "families/flux2_klein4b.original", "families/flux2_klein4b.diffusers"),
    ("lumina2", "families/lumina2.comfy", "families/lumina2.diffusers"),
    ("z_image", "families/z_image.original", "families/z_image.diffusers"),
    ("pixart", "families/pixart_alpha.comfy", "families/pixart_alpha.diffusers"),
    ("pixart", "families/pixart_sigma.comfy", "families/pixart_sigma.diffusers"),
    ("sana", "families/sana.original", "families/sana.diffusers"),
    ("auraflow", "families/auraflow.comfy", "families/auraflow.diffusers"),
    ("sd3", "families/sd3_medium.comfy", "families/sd3_medium.diffusers"),
    ("sd3", "families/sd35_medium.comfy", "families/sd35_medium.diffusers"),
    ("sd3", "families/sd35_large.comfy", "families/sd35_large.diffusers"),
    ("qwen_image", "families/qwen_image.comfy", "families/qwen_image.diffusers"),
    ("hidream", "families/hidream_i1.comfy", "families/hidream_i1.diffusers"),
    ("wan", "video/wan2.1-t2v-14b.original", "video/wan2.1-t2v-14b.diffusers"),
    ("wan", "video/wan2.1-i2v-14b.original", "video/wan2.1-i2v-14b.diffusers"),
    ("wan", "video/wan2.1-flf2v-14b.original", "video/wan2.1-flf2v-14b.diffusers"),
    ("wan", "video/wan2.1-vace-1.3b.original", "video/wan2.1-vace-1.3b.diffusers"),
    ("wan", "video/wan2.2-ti2v-5b.original", "video/wan2.2-ti2v-5b.diffusers"),
    ("wan", "video/wan2.2-i2v-14b.original", "video/wan2.2-i2v-14b.diffusers"),
    ("hunyuan_video", "video/hunyuan_video-t2v.original", "video/hunyuan_video-t2v.diffusers"),
    ("hunyuan_video", "video/hunyuan_video-i2v.original", "video/hunyuan_video-i2v.diffusers"),
    ("ltxv", "video/ltxv-2b.original", "video/ltxv-2b.diffusers"),
    ("ltxv", "video/ltx2.original", "video/ltx2.diffusers"),
]


# The stored diffusers Lumina 2 layout was built with the class's default caption width (1024), not
# the release's Gemma-2 2304: only the shape of that one weight differs, its name is right.
SHAPE_UNCHECKED = {"cap_embedder.1"}


@cache
def weights(name: str) -> dict[str, tuple[int, ...]]:
    """Module path -> weight shape of the 2-D and conv weights (what LoRAs target)."""
    with gzip.open(LAYOUTS / f"{name}.json.gz") as f:
        data = json.load(f)
    tensors = data.get("tensors", data)
    out = {}
    for key, info in tensors.items():
        shape = tuple(info["shape"] if isinstance(info, dict) else info[0])
        key = next((key[len(r) :] for r in ROOTS if key.startswith(r)), key)
        if key.endswith(".weight") and len(shape) >= 2:
            out[key[: -len(".weight")]] = shape
    return out


@pytest.mark.parametrize(("family", "native", "diffusers"), PAIRS, ids=[p[1].split("/")[1] for p in PAIRS])
def test_every_single_file_weight_has_its_diffusers_names(family: str, native: str, diffusers: str) -> None:
    names, theirs = NAMES[family], weights(diffusers)
    for path, shape in weights(native).items():
        assert unflatten(path.replace(".", "_"), names.compounds) == path
        out = names.to_diffusers(path)
        assert out is not None, path
        paths, _swapped = out
        assert all(p in theirs for p in paths), (path, paths)
        if path in SHAPE_UNCHECKED:
            continue
        if len(paths) == 1:
            assert theirs[paths[0]] == shape, path
        else:
            assert sum(theirs[p][0] for p in paths) == shape[0], path
            assert all(theirs[p][1:] == shape[1:] for p in paths), path


@pytest.mark.parametrize(("family", "native", "diffusers"), PAIRS, ids=[p[1].split("/")[1] for p in PAIRS])
def test_every_diffusers_weight_has_its_single_file_name(family: str, native: str, diffusers: str) -> None:
    names, ours = NAMES[family], weights(native)
    for path in weights(diffusers):
        assert unflatten(path.replace(".", "_"), names.compounds) == path
        mapped = names.to_native(path)
        assert mapped is not None, path
        assert mapped.path in ours, (path, mapped.path)
        back = names.to_diffusers(mapped.path)
        assert back is not None and path in back[0], path


@pytest.mark.parametrize(("family", "native", "diffusers"), PAIRS, ids=[p[1].split("/")[1] for p in PAIRS])
def test_a_lora_on_every_weight_is_told_its_family_in_each_naming(family: str, native: str, diffusers: str) -> None:
    from sdmodel.formats.base import TensorInfo
    from sdmodel.lora.families import family_from_keys
    from sdmodel.lora.info import probes
    from sdmodel.lora.keys import parse
    from tests import lora_layouts as L

    def lora_targets(names: str) -> dict[str, tuple[int, ...]]:
        return {k: s for k, s in weights(names).items() if len(s) in (2, 4)}

    for naming, lay in (
        ("kohya", L.kohya(lora_targets(native), rank=2)),
        ("comfy", L.comfy(lora_targets(native), rank=2)),
        ("diffusers", L.peft(lora_targets(diffusers), rank=2)),
    ):
        tensors = {k: TensorInfo(k, d, tuple(s)) for k, (s, d) in lay.items()}
        found, _candidates = family_from_keys(probes(parse(tensors), tensors))
        assert found == family, naming
