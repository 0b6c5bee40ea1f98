"""Diffusers folders read as one model, presented under the single-file (LDM / A1111) tensor names.

A pipeline folder (``model_index.json`` + ``unet/``, ``vae/``, ``text_encoder/``, ``text_encoder_2/``...)
or a single component folder (``config.json`` + weights). Renamed tensors are read straight from their
file; tensors that need a reshape, a q/k/v concatenation or a transpose are built in ``read``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sdmodel.errors import ModelReadError, error_message
from sdmodel.formats import diffusers_map as dm
from sdmodel.formats.base import TensorInfo, TensorSource
from sdmodel.i18n import N_, Msg
from sdmodel.parts import SD2_TEXT_PREFIX
from sdmodel.registry import DIFFUSION_SIGNATURES, Family, family_from_diffusers_config, match

# Components whose weights belong to the single-file layout, in presentation order.
DIFFUSION_COMPONENTS = ("unet", "transformer")
SD_COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")
# Components with weights that no single-file checkpoint holds.
SKIPPED_COMPONENTS = {"safety_checker": N_("the safety checker is not part of single-file checkpoints")}

_WEIGHT_RE = re.compile(r"^(diffusion_pytorch_model|model)(?:\.([A-Za-z0-9_-]+))?\.(safetensors|bin)$")
_INDEX_RE = re.compile(r"^(diffusion_pytorch_model|model)\.(safetensors|bin)\.index(?:\.([A-Za-z0-9_-]+))?\.json$")
_LOW_PRECISION = ("fp16", "bf16", "fp8", "half")


@dataclass(frozen=True)
class _Recipe:
    """How to produce one presented tensor: op over (source, name) parts."""

    op: str
    parts: tuple[tuple[TensorSource, str], ...]


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelReadError(Msg("{path}: cannot read JSON ({reason})", path=path, reason=error_message(e))) from None
    if not isinstance(data, dict):
        raise ModelReadError(Msg("{path}: not a JSON object", path=path))
    return data


def _weight_candidates(folder: Path) -> list[tuple[tuple[int, int], Path]]:
    """Weight files (or shard indexes) of a component folder, best first: the default (full-precision)
    file before variants, low-precision variants last; safetensors before pickles within each."""
    found: list[tuple[tuple[int, int], Path]] = []
    for p in folder.iterdir():
        if not p.is_file():
            continue
        m = _WEIGHT_RE.match(p.name)
        if m:
            variant, ext = m.group(2), m.group(3)
        else:
            m = _INDEX_RE.match(p.name)
            if not m:
                continue
            ext, variant = m.group(2), m.group(3)
        if variant is not None and "-of-" in variant:
            continue  # a shard: read through its index
        rank = 0 if variant is None else (2 if variant.startswith(_LOW_PRECISION) else 1)
        found.append(((rank, 0 if ext == "safetensors" else 1), p))
    found.sort(key=lambda t: (t[0], t[1].name))
    return found


class DiffusersSource(TensorSource):
    """A diffusers pipeline or component folder as one lazily read model."""

    format = "diffusers"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._open: list[TensorSource] = []
        self._recipes: dict[str, _Recipe] = {}
        try:
            self._build()
        except Exception:
            self.close()
            raise

    # ------------------------------------------------------------------------------------- discovery

    def _build(self) -> None:
        root = self.path
        if not root.is_dir():
            raise ModelReadError(Msg("{root}: not a folder", root=root))
        if (root / "model_index.json").is_file():
            self._build_pipeline(root)
        elif (root / "config.json").is_file():
            self._build_single(root)
        else:
            raise ModelReadError(Msg("{root}: not a diffusers folder (no model_index.json or config.json)", root=root))
        if not self._tensors:
            raise ModelReadError(Msg("{root}: diffusers folder holds no tensors", root=root))

    def _build_pipeline(self, root: Path) -> None:
        index = _load_json(root / "model_index.json")
        for key in ("_class_name", "_diffusers_version"):
            if key in index:
                self.metadata[key] = str(index[key])
        listed = [k for k, v in index.items() if not k.startswith("_") and isinstance(v, list) and v[:1] != [None]]
        folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        for name in listed:
            if name not in folders:
                self.note(
                    "diffusers-missing-component",
                    Msg("model_index.json lists {name}, but {name}/ is missing", name=name),
                )
        components: dict[str, dict[str, tuple[TensorSource, TensorInfo]]] = {}
        configs: dict[str, dict[str, Any]] = {}
        order = [c for c in SD_COMPONENTS if c in folders] + [c for c in folders if c not in SD_COMPONENTS]
        for comp in order:
            folder = root / comp
            if comp in SKIPPED_COMPONENTS:
                if _weight_candidates(folder):
                    self.note(
                        "diffusers-skipped",
                        Msg("{comp}/ not presented: {why}", comp=comp, why=Msg(SKIPPED_COMPONENTS[comp])),
                    )
                continue
            tensors = self._open_component(folder)
            if tensors is None:
                continue
            components[comp] = tensors
            configs[comp] = _load_json(folder / "config.json") if (folder / "config.json").is_file() else {}
        if not components:
            raise ModelReadError(Msg("{root}: diffusers folder holds no weight files", root=root))
        self.extras["components"] = list(components)
        sched = root / "scheduler" / "scheduler_config.json"
        if sched.is_file():
            pred = _load_json(sched).get("prediction_type")
            if isinstance(pred, str):
                self.extras["prediction_type"] = pred
        family = next((_family(components[c], configs[c]) for c in DIFFUSION_COMPONENTS if c in components), None)
        self.extras["family"] = family.id if family else "unknown"
        mapped = {c.role: c for c in family.components if c.mapping} if family else {}
        if not any(c in mapped for c in DIFFUSION_COMPONENTS):
            cls = self.metadata.get("_class_name") or "this pipeline"
            self.note(
                "diffusers-no-mapping",
                Msg("no single-file mapping for {cls}: tensors kept under <component>.", cls=cls),
            )
            for comp, tensors in components.items():
                self._add_unmapped(comp, tensors)
            return
        for comp, tensors in components.items():
            if comp in mapped:
                self._add_planned(comp, tensors, mapped[comp].mapping or "", mapped[comp].prefix)
            else:
                self.note(
                    "diffusers-unmapped", Msg("{comp}/: no single-file name; tensors kept under {comp}.", comp=comp)
                )
                self._add_unmapped(comp, tensors)

    def _build_single(self, folder: Path) -> None:
        config = _load_json(folder / "config.json")
        cls = config.get("_class_name")
        if cls is None and isinstance(config.get("architectures"), list) and config["architectures"]:
            cls = config["architectures"][0]
        if cls is not None:
            self.metadata["_class_name"] = str(cls)
        for key in ("_diffusers_version", "transformers_version"):
            if key in config:
                self.metadata[key] = str(config[key])
        tensors = self._open_component(folder)
        if tensors is None:
            raise ModelReadError(Msg("{folder}: config.json but no weight file", folder=folder))
        names = list(tensors)
        # The component is named by what it is: the folder name of a lone component is arbitrary.
        if cls == "AutoencoderKL" or (cls is None and dm.looks_like_diffusers_vae(names)):
            self.extras.update(components=["vae"], family="vae")
            self._add_planned("vae", tensors, "vae", "")
        elif cls == "UNet2DConditionModel":
            family = _family(tensors, config)
            self.extras.update(components=["unet"], family=family.id if family else "unknown")
            self._add_planned("unet", tensors, "unet", "")
        elif isinstance(cls, str) and cls.startswith("CLIPTextModel"):
            # Standalone text encoder files use the HF names unchanged.
            self.extras.update(components=["text_encoder"], family="text_encoder")
            self._add_unmapped(None, tensors)
        else:
            self.extras["components"] = [folder.name]
            self.note(
                "diffusers-no-mapping",
                Msg("no single-file mapping for {cls}", cls=cls)
                if cls
                else Msg("no single-file mapping for this component"),
            )
            self._add_unmapped(None, tensors)

    def _open_component(self, folder: Path) -> dict[str, tuple[TensorSource, TensorInfo]] | None:
        """Tensors of a component folder by diffusers name; None for a folder without weights or
        config (scheduler, tokenizer...); ModelReadError for a config without weights."""
        candidates = _weight_candidates(folder)
        if not candidates:
            if (folder / "config.json").is_file():
                raise ModelReadError(
                    Msg(
                        "{folder}: config.json but no weight file (diffusion_pytorch_model.safetensors or model.safetensors)",
                        folder=folder,
                    )
                )
            return None
        chosen = candidates[0][1]
        if len(candidates) > 1:
            others = ", ".join(p.name for _, p in candidates[1:])
            self.note(
                "diffusers-variant",
                Msg("{folder}/: read {file}, ignored {others}", folder=folder.name, file=chosen.name, others=others),
            )
        if chosen.name.endswith(".json"):
            return self._open_sharded(chosen)
        src = self._open_file(chosen)
        return {name: (src, info) for name, info in src.tensors.items()}

    def _open_file(self, path: Path) -> TensorSource:
        from sdmodel.formats import open_model  # noqa: PLC0415 - open_model imports this module on first use

        if path.is_dir():
            raise ModelReadError(Msg("{path}: expected a weight file, found a folder", path=path))
        src = open_model(path)
        self._open.append(src)
        self.extras.setdefault("files", []).append(path.relative_to(self.path).as_posix())
        for n in src.notes:
            self.note(
                n.code, Msg("{folder}/{file}: {message}", folder=path.parent.name, file=path.name, message=n.message)
            )
        return src

    def _open_sharded(self, index_path: Path) -> dict[str, tuple[TensorSource, TensorInfo]]:
        index = _load_json(index_path)
        weight_map = index.get("weight_map")
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise ModelReadError(Msg("{index_path}: no valid weight_map", index_path=index_path))
        shards: dict[str, TensorSource] = {}
        for shard in dict.fromkeys(weight_map.values()):
            # A plain file name beside the index (HF cache folders hold symlinks: no resolve()).
            if "/" in shard or "\\" in shard or shard in ("", ".", ".."):
                raise ModelReadError(
                    Msg(
                        "{index_path}: shard {shard!r} is not a file name in its folder",
                        index_path=index_path,
                        shard=shard,
                    )
                )
            shard_path = index_path.parent / shard
            if not shard_path.is_file():
                raise ModelReadError(Msg("{index_path}: shard {shard} is missing", index_path=index_path, shard=shard))
            shards[shard] = self._open_file(shard_path)
        out: dict[str, tuple[TensorSource, TensorInfo]] = {}
        for shard, src in shards.items():
            for name, info in src.tensors.items():
                if name in out:
                    raise ModelReadError(
                        Msg(
                            "{index_path}: tensor {name!r} appears in more than one shard",
                            index_path=index_path,
                            name=name,
                        )
                    )
                if weight_map.get(name) != shard:
                    self.note(
                        "diffusers-index-mismatch",
                        Msg(
                            "{index}: {tensor} found in {shard}, index says {listed}",
                            index=index_path.name,
                            tensor=name,
                            shard=shard,
                            listed=weight_map.get(name),
                        ),
                    )
                out[name] = (src, info)
        missing = [n for n in weight_map if n not in out]
        if missing:
            raise ModelReadError(
                Msg(
                    "{index_path}: {missing_count} indexed tensor(s) missing from the shards, e.g. {missing!r} in {weight_map}",
                    index_path=index_path,
                    missing_count=len(missing),
                    missing=missing[0],
                    weight_map=weight_map[missing[0]],
                )
            )
        return out

    # ----------------------------------------------------------------------------------- presenting

    def _add_planned(
        self, comp: str, tensors: dict[str, tuple[TensorSource, TensorInfo]], role: str, prefix: str
    ) -> None:
        names = list(tensors)
        if role == "unet":
            plan = dm.plan_unet(names, prefix)
        elif role == "vae":
            plan = dm.plan_vae(names, prefix)
        elif role == "openclip":
            plan = dm.plan_openclip(names, prefix)
        else:
            plan = dm.plan_clip_l(names, prefix)
        for m in plan.mappings:
            infos = [tensors[s][1] for s in m.sources]
            dtypes = {i.dtype for i in infos}
            if len(dtypes) != 1:
                self.note(
                    "diffusers-unmapped",
                    Msg("{comp}/: parts of {target} differ in dtype; kept unmapped", comp=comp, target=m.target),
                )
                plan.unmapped.extend(m.sources)
                continue
            self._add(
                m.target,
                infos[0].dtype,
                dm.output_shape(m.op, [i.shape for i in infos]),
                _Recipe(m.op, tuple((tensors[s][0], s) for s in m.sources)),
            )
        if plan.dropped:
            self.note(
                "diffusers-dropped",
                Msg(
                    "{comp}/: not presented (no single-file counterpart): {names}",
                    comp=comp,
                    names=", ".join(plan.dropped),
                ),
            )
        if plan.unmapped:
            self.note(
                "diffusers-unmapped",
                Msg(
                    "{comp}/: {n} tensor(s) with no single-file name, kept under {comp}. (e.g. {example})",
                    comp=comp,
                    n=len(plan.unmapped),
                    example=plan.unmapped[0],
                ),
            )
            self._add_unmapped(comp, {n: tensors[n] for n in plan.unmapped})
        if role == "openclip":
            self._openclip_notes(comp, names, prefix)

    def _openclip_notes(self, comp: str, names: list[str], prefix: str) -> None:
        layer_re = re.compile(r"text_model\.encoder\.layers\.(\d+)\.")
        layers = {m.group(1) for n in names if (m := layer_re.match(n))}
        if prefix == SD2_TEXT_PREFIX and len(layers) == 23:
            self.note(
                "diffusers-sd2-text-layers",
                Msg(
                    "{comp}/: 23 text layers (diffusers drops the unused 24th resblock that SD2 single files store)",
                    comp=comp,
                ),
            )
        self.note(
            "diffusers-no-logit-scale",
            Msg("{comp}/: no {prefix}logit_scale (diffusers does not store it)", comp=comp, prefix=prefix),
        )

    def _add_unmapped(self, comp: str | None, tensors: dict[str, tuple[TensorSource, TensorInfo]]) -> None:
        for name, (src, info) in tensors.items():
            target = name if comp is None else f"{comp}.{name}"
            self._add(target, info.dtype, info.shape, _Recipe(dm.COPY, ((src, name),)))

    def _add(self, target: str, dtype: str, shape: tuple[int, ...], recipe: _Recipe) -> None:
        if target in self._tensors:
            raise ModelReadError(Msg("{path}: two tensors map to {target!r}", path=self.path, target=target))
        self._tensors[target] = TensorInfo(target, dtype, tuple(shape))
        self._recipes[target] = recipe

    # --------------------------------------------------------------------------------------- reading

    def read(self, name: str) -> np.ndarray:
        recipe = self._recipes[name]
        arrays = [src.read(part) for src, part in recipe.parts]
        return dm.apply_op(recipe.op, arrays)

    def source_of(self, name: str) -> list[tuple[Path, str]]:
        """The file(s) and diffusers name(s) a presented tensor comes from."""
        return [(src.path, part) for src, part in self._recipes[name].parts]

    def close(self) -> None:
        for src in self._open:
            src.close()
        self._open.clear()


def _family(tensors: dict[str, tuple[TensorSource, TensorInfo]], config: dict[str, Any]) -> Family | None:
    """The registry family of a UNet / transformer component: a UNet's names are first mapped to the
    single-file names, then matched like any file (one classifier, one vocabulary); when shapes do not
    decide, the registry is asked with the config's class and cross-attention width."""
    infos = dm.with_ldm_unet_names({n: info for n, (_, info) in tensors.items()})
    found = match(infos, DIFFUSION_SIGNATURES)
    if found is not None:
        return found[0].family
    return family_from_diffusers_config(config)


class LdmVaeView(TensorSource):
    """A diffusers-layout VAE file (already opened) presented under LDM VAE names, with ``prefix``
    (``""`` for a standalone VAE, ``first_stage_model.`` to merge into a checkpoint). Tensors with no
    LDM name keep their own name."""

    def __init__(self, inner: TensorSource, prefix: str = "") -> None:
        super().__init__(inner.path)
        self.inner = inner
        self.format = inner.format
        self.metadata = dict(inner.metadata)
        self.notes = list(inner.notes)
        self._recipes: dict[str, tuple[str, str]] = {}
        plan = dm.plan_vae(list(inner.tensors), prefix)
        for m in plan.mappings:
            info = inner.tensors[m.sources[0]]
            self._tensors[m.target] = TensorInfo(m.target, info.dtype, dm.output_shape(m.op, [info.shape]))
            self._recipes[m.target] = (m.op, m.sources[0])
        for name in plan.unmapped:
            self._tensors[name] = inner.tensors[name]
            self._recipes[name] = (dm.COPY, name)
        if plan.unmapped:
            self.note("diffusers-unmapped", Msg("{n} VAE tensor(s) have no LDM name, kept as is", n=len(plan.unmapped)))

    def read(self, name: str) -> np.ndarray:
        op, src = self._recipes[name]
        return dm.apply_op(op, [self.inner.read(src)])

    def close(self) -> None:
        self.inner.close()
