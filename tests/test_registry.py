"""The registry as a whole: every family complete (records, signatures, a fixture that identifies as
each of its variants), no second vocabulary."""

from __future__ import annotations

import pytest

from sdmodel import registry
from sdmodel.formats import open_model
from sdmodel.identify import identify
from sdmodel.registry.model import Family, Naming, Signature
from tests.families import FAMILY_FIXTURES, LAYOUT_FIXTURES, as_checkpoint, family_layout, prefixed


def _answers() -> set[tuple[str, str]]:
    """Every (family, variant) a diffusion signature can answer."""
    out = set()
    for sig in registry.DIFFUSION_SIGNATURES:
        assert sig.family is not None, sig.id
        for name in (sig.default_variant, *(v.name for v in sig.variants)):
            if name:
                out.add((sig.family.id, name))
    return out


def _candidates() -> set[tuple[str, str]]:
    out = {(s.family.id, c) for s in registry.DIFFUSION_SIGNATURES if s.family for c in s.candidates}
    out |= {
        (s.family.id, c) for s in registry.DIFFUSION_SIGNATURES if s.family for v in s.variants for c in v.candidates
    }
    return out


def _covered() -> set[tuple[str, str | None]]:
    return {(f, v) for f, v, _, _ in FAMILY_FIXTURES} | {(f, v) for _, f, v in LAYOUT_FIXTURES}


def test_ids_are_unique():
    for ids in ([f.id for f in registry.FAMILIES], [s.id for s in registry.SIGNATURES]):
        assert len(ids) == len(set(ids))


@pytest.mark.parametrize("fam", registry.FAMILIES, ids=lambda f: f.id)
def test_every_family_is_complete(fam: Family):
    """A Family record has signatures, a label, names only for variants it can answer or list, and a
    fixture layout."""
    sigs = [s for s in registry.DIFFUSION_SIGNATURES if s.family is fam]
    assert sigs, f"{fam.id}: no diffusion signature"
    assert fam.label and registry.family(fam.id) is fam
    variants = {v for f, v in _answers() | _candidates() if f == fam.id}
    assert {n.variant for n in fam.names} <= variants, fam.id
    assert any(f == fam.id for f, _ in _covered()), f"{fam.id}: no fixture layout"


def test_every_answer_has_a_fixture():
    """Adding a family or variant without a layout that identifies as it fails here."""
    assert _answers() <= _covered(), sorted(_answers() - _covered())


@pytest.mark.parametrize(
    ("family", "variant", "kind", "build"), FAMILY_FIXTURES, ids=lambda x: x if isinstance(x, str) else None
)
def test_fixture_round_trip(sparse, family, variant, kind, build):
    with open_model(sparse(build())) as src:
        ident = identify(src)
    assert (ident.kind, ident.family, ident.variant) == (kind, family, variant)
    assert ident.description


PREFIXES = ("", "model.diffusion_model.", "diffusion_model.", "model.")
DIFFUSERS_UNETS = {"ssd1b.diffusers", "kolors.diffusers"}


@pytest.mark.parametrize(("name", "family", "variant"), LAYOUT_FIXTURES, ids=[x[0] for x in LAYOUT_FIXTURES])
def test_layout_round_trip(sparse, name, family, variant):
    """Every naming under every usual prefix as a lone model, and as a whole checkpoint."""
    lay = family_layout(name)
    if name in DIFFUSERS_UNETS:  # a lone diffusers UNet file: bare names only
        with open_model(sparse(lay)) as src:
            ident = identify(src)
        assert (ident.kind, ident.family, ident.variant) == ("unet", family, variant)
        return
    for i, prefix in enumerate(PREFIXES):
        with open_model(sparse(prefixed(lay, prefix), name=f"{i}.safetensors")) as src:
            ident = identify(src)
        assert (ident.kind, ident.family, ident.variant) == ("unet", family, variant), prefix
    with open_model(sparse(as_checkpoint(lay), name="ckpt.safetensors")) as src:
        ident = identify(src)
    assert (ident.kind, ident.family, ident.variant) == ("checkpoint", family, variant)


def test_signatures_point_at_registered_families():
    for sig in registry.SIGNATURES:
        assert sig.family is None or registry.family(sig.family.id) is sig.family, sig.id


def test_metadata_aliases_longest_prefix_wins():
    assert registry.family_from_metadata("sdxl_refiner_v1") == "sdxl_refiner"
    assert registry.family_from_metadata("stable-diffusion-xl-v1-base/lora") == "sdxl"
    assert registry.family_from_metadata("sd_v1") == "sd1"
    assert registry.family_from_metadata("something-else") is None


def test_widths_are_fields():
    assert [registry.family_by_context_width(w) for w in (768, 1024, 2048, 4096)] == ["sd1", "sd2", "sdxl", None]
    assert [registry.family_by_embedding_width(w) for w in (768, 1024, 1280)] == ["sd1", "sd2", "sdxl"]


def test_records_check_their_values():
    with pytest.raises(ValueError, match="expected one of image, video, encoder"):
        Family("x", "X", "audio")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected one of diffusion"):
        Signature("x", "lora", None, ("",), ())  # type: ignore[arg-type]


def test_naming_by_prediction():
    sd2 = registry.family("sd2")
    assert sd2 is not None
    assert sd2.naming("base", "v").a1111_config == "v2-inference-v.yaml"
    assert sd2.naming("base", None) == Naming("")
    assert registry.naming("sdxl", "inpaint", "v").a1111_config == "sd_xl_inpaint.yaml"


def test_diffusers_config_fallback():
    assert registry.family_from_diffusers_config({"cross_attention_dim": 768}).id == "sd1"  # type: ignore[union-attr]
    assert registry.family_from_diffusers_config({"_class_name": "Foo", "cross_attention_dim": 768}) is None
