"""Which base a fine-tune descends from, when shapes cannot tell: Pony, Illustrious and NoobAI are
all SDXL to the tensors. The answer comes from what people and trainers wrote about the file, in
order of trust: ModelSpec metadata, kohya ``ss_*`` metadata, a ``.civitai.info`` sidecar's
``baseModel``, an A1111 ``.json`` sidecar's ``sd version``, and the file name. Each answer says where
it came from. v-prediction and zero-terminal-SNR are read the same way, plus the ``v_pred`` and
``ztsnr`` marker tensors (reForge / NoobAI), and the sampler settings they imply are named.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sdmodel.i18n import N_
from sdmodel.sidecars import read_json, stem_of

Base = Literal["pony", "illustrious", "noobai", "animagine", "kolors", "playground", "sdxl"]


@dataclass(frozen=True)
class Lineage:
    """A fine-tune's base and prediction, each with the place it was read from."""

    base: Base | None = None
    base_source: str | None = None
    v_prediction: bool | None = None
    v_source: str | None = None
    zsnr: bool = False
    zsnr_source: str | None = None
    settings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "base": self.base,
            "base_source": self.base_source,
            "v_prediction": self.v_prediction,
            "v_source": self.v_source,
            "zsnr": self.zsnr,
            "zsnr_source": self.zsnr_source,
            "settings": self.settings,
            "implies": self.implies,
        }

    @property
    def implies(self) -> list[str]:
        """Machine ids of the sampler settings this lineage needs (``settings`` says them)."""
        return [name for name, on in (("v_prediction_sampler", self.v_prediction), ("zsnr", self.zsnr)) if on]


# Words that name an SDXL base, as they appear in titles, Civitai base models, kohya's
# ss_sd_model_name and file names (most specific first: NoobAI is trained from Illustrious).
_BASE_WORDS: tuple[tuple[Base, re.Pattern[str]], ...] = (
    ("noobai", re.compile(r"noob[-_ ]?ai|noobxl|\bnoob\b", re.IGNORECASE)),
    ("illustrious", re.compile(r"illustrious|\bilxl\b", re.IGNORECASE)),
    ("pony", re.compile(r"pony(?!tail)|pdxl", re.IGNORECASE)),
    ("animagine", re.compile(r"animagine", re.IGNORECASE)),
    ("kolors", re.compile(r"kolors", re.IGNORECASE)),
    ("playground", re.compile(r"playground[-_ ]?v?2", re.IGNORECASE)),
)
_V_WORDS = re.compile(r"(^|[^a-z])(v[-_ ]?pred(iction)?|vpred|v[-_ ]?param(eterization)?)([^a-z]|$)", re.IGNORECASE)
_EPS_WORDS = re.compile(r"(^|[^a-z])(eps(ilon)?[-_ ]?pred(iction)?)([^a-z]|$)", re.IGNORECASE)
_ZSNR_WORDS = re.compile(r"zsnr|ztsnr|zero[-_ ]terminal", re.IGNORECASE)


def _base_in(text: str) -> Base | None:
    return next((base for base, words in _BASE_WORDS if words.search(text)), None)


def sidecar_texts(path: Path | None) -> list[tuple[str, str]]:
    """(where, text) pairs from the sidecars beside ``path`` that speak of its base."""
    if path is None or not path.is_file():
        return []
    stem = stem_of(path.name)
    found: list[tuple[str, str]] = []
    civitai = read_json(path.with_name(stem + ".civitai.info"))
    base_model = civitai.get("baseModel")
    if isinstance(base_model, str):
        found.append((f"{stem}.civitai.info baseModel", base_model))
    model = civitai.get("model")
    if isinstance(model, dict) and isinstance(model.get("name"), str):
        found.append((f"{stem}.civitai.info model name", str(model["name"])))
    notes = read_json(path.with_name(stem + ".json"))
    version = notes.get("sd version")
    if isinstance(version, str):
        found.append((f"{stem}.json sd version", version))
    return found


def lineage(
    metadata: Mapping[str, str], tensor_names: set[str] | Mapping[str, object], path: Path | None = None
) -> Lineage:
    """Base, v-prediction and ZSNR of a model (meaningful for SDXL-shaped files), from metadata,
    marker tensors, sidecars and the file name, each answer with its source."""
    texts: list[tuple[str, str]] = []
    for key in ("modelspec.architecture", "modelspec.title", "modelspec.description"):
        if metadata.get(key):
            texts.append((f"{key} metadata", metadata[key]))
    for key in ("ss_sd_model_name", "ss_base_model_version", "ss_output_name"):
        if metadata.get(key):
            texts.append((f"kohya {key} metadata", metadata[key]))
    texts += sidecar_texts(path)
    if path is not None:
        texts.append(("file name", path.name))

    base, base_source = None, None
    for where, text in texts:
        found = _base_in(text)
        if found is not None:
            base, base_source = found, where
            break

    v, v_source = _prediction(metadata, tensor_names, texts)
    zsnr, zsnr_source = False, None
    if "ztsnr" in tensor_names:
        zsnr, zsnr_source = True, "ztsnr marker tensor"
    elif metadata.get("ss_zero_terminal_snr", "").lower() == "true":
        zsnr, zsnr_source = True, "kohya ss_zero_terminal_snr metadata"
    else:
        hit = next((where for where, text in texts if _ZSNR_WORDS.search(text)), None)
        if hit:
            zsnr, zsnr_source = True, hit
    settings: list[str] = []
    if v:
        settings.append(N_("v-prediction: a v-prediction sampler setting (A1111: the sd_xl_v.yaml config beside it)"))
    if zsnr:
        settings.append(N_("zero terminal SNR: enable it in the sampler (rescale CFG around 0.7 helps)"))
    return Lineage(base, base_source, v, v_source, zsnr, zsnr_source, settings)


def _prediction(
    metadata: Mapping[str, str], tensor_names: set[str] | Mapping[str, object], texts: list[tuple[str, str]]
) -> tuple[bool | None, str | None]:
    if "v_pred" in tensor_names:
        return True, "v_pred marker tensor"
    spec = metadata.get("modelspec.prediction_type", "").lower()
    if spec in ("v", "epsilon"):
        return spec == "v", "modelspec.prediction_type metadata"
    if metadata.get("ss_v_parameterization", "").lower() == "true":
        return True, "kohya ss_v_parameterization metadata"
    for where, text in texts:
        if _V_WORDS.search(text):
            return True, where
        if _EPS_WORDS.search(text):
            return False, where
    return None, None
