"""Where files go (sdmodel.placement), info's placement and lineage, and the library's checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from sdmodel import registry
from sdmodel.cli import main_group
from sdmodel.inspection import inspect
from sdmodel.library.placing import CompanionIndex, companions_of, placement_of, placement_problems
from sdmodel.placement import advice_line, folder_problem, place, storage_of, ui_of_path
from tests.builders import write_sparse_safetensors
from tests.families import clip_l, flux, sd1, t5xxl, unet_only


def test_flux_diffusion_model_goes_to_diffusion_models_with_its_companions() -> None:
    p = place("unet", "flux", "dev")
    comfy = p.target("comfyui")
    assert comfy is not None and comfy.folder == "models/diffusion_models" and comfy.loader == "UNETLoader"
    assert p.companions is not None
    assert p.companions.text_encoders == ("t5xxl", "clip_l") and p.companions.vae == "16ch"
    assert (p.companions.clip_loader, p.companions.clip_type) == ("DualCLIPLoader", "flux")
    swarm = p.target("swarmui")
    assert swarm is not None and swarm.folder == "Models/diffusion_models"


def test_checkpoint_has_no_companions_and_loads_with_load_checkpoint() -> None:
    p = place("checkpoint", "sd1")
    assert p.companions is None
    a1111, comfy = p.target("a1111"), p.target("comfyui")
    assert a1111 is not None and a1111.folder == "models/Stable-diffusion"
    assert comfy is not None and comfy.loader == "CheckpointLoaderSimple"


@pytest.mark.parametrize(
    ("storage", "kind", "node"),
    [
        ("gguf", "unet", "UnetLoaderGGUF"),
        ("gguf", "text_encoder", "CLIPLoaderGGUF"),
        ("bnb_4bit", "checkpoint", "CheckpointLoaderNF4"),
        ("nunchaku", "unet", "NunchakuFluxDiTLoader"),
    ],
)
def test_quantized_storage_needs_a_custom_node(storage: str, kind: str, node: str) -> None:
    t = place(kind, "flux", storage=storage).target("comfyui")  # type: ignore[arg-type]
    assert t is not None and t.loader == node and t.custom_node


def test_scaled_fp8_loads_with_the_core_node_and_nunchaku_not_in_a1111() -> None:
    t = place("unet", "flux", storage="scaled_fp8").target("comfyui")
    assert t is not None and t.loader == "UNETLoader" and t.custom_node is None
    a = place("unet", "flux", storage="nunchaku").target("a1111")
    assert a is not None and a.folder is None and a.reason


def test_storage_of() -> None:
    assert storage_of("gguf", None) == "gguf"
    assert storage_of("safetensors", "comfy_scaled_fp8") == "scaled_fp8"
    assert storage_of("safetensors", None) == "plain"


def test_unknown_kind_gets_no_folder_and_unknown_family_no_companions() -> None:
    p = place("unknown", None)
    assert p.targets == () and p.companions is None
    u = place("unet", None)
    assert u.companions is None and u.notes
    with pytest.raises(ValueError, match="expected one of"):
        place("unet", "flux", storage="zip")  # type: ignore[arg-type]


def test_video_model_has_no_a1111_folder() -> None:
    t = place("unet", "wan").target("a1111")
    assert t is not None and t.folder is None and "video" in str(t.reason)


def test_image_encoder_and_ip_adapter_folders() -> None:
    assert place("image_encoder", None).target("comfyui").folder == "models/clip_vision"  # type: ignore[union-attr]
    assert place("ip_adapter", "sdxl").target("comfyui").folder == "models/ipadapter"  # type: ignore[union-attr]
    assert place("image_encoder", None).target("a1111").folder is None  # type: ignore[union-attr]


def test_every_clip_type_is_one_comfyui_knows() -> None:
    # ComfyUI nodes.py CLIPLoader and DualCLIPLoader type lists (Dec 2025).
    single = {"stable_diffusion", "stable_cascade", "sd3", "stable_audio", "mochi", "ltxv", "pixart", "cosmos"}
    single |= {"lumina2", "wan", "hidream", "chroma", "ace", "omnigen2", "qwen_image", "hunyuan_image", "flux2"}
    single |= {"ovis", "longcat_image"}
    dual = {"sdxl", "sd3", "flux", "hunyuan_video", "hidream", "hunyuan_image", "hunyuan_video_15", "kandinsky5"}
    dual |= {"kandinsky5_image", "ltxv", "newbie", "ace"}
    for fam in registry.FAMILIES:
        if fam.comfy_clip_type is not None:
            allowed = dual if fam.comfy_clip_loader == "DualCLIPLoader" else single
            assert fam.comfy_clip_type in allowed, fam.id


@pytest.mark.parametrize(
    ("path", "found"),
    [
        ("/x/ComfyUI/models/checkpoints/a.safetensors", ("comfyui", "models/checkpoints")),
        ("/x/ComfyUI/models/unet/sub/a.gguf", ("comfyui", "models/unet")),
        ("/x/webui/models/Stable-diffusion/a.safetensors", ("a1111", "models/Stable-diffusion")),
        ("/x/webui/models/VAE/a.safetensors", ("a1111", "models/VAE")),
        ("/x/webui/embeddings/a.pt", ("a1111", "embeddings")),
        ("/x/SwarmUI/Models/diffusion_models/a.safetensors", ("swarmui", "Models/diffusion_models")),
        ("/x/downloads/a.safetensors", None),
    ],
)
def test_ui_of_path(path: str, found: tuple[str, str] | None) -> None:
    assert ui_of_path(path) == found


def test_folder_problem_positive_and_negative() -> None:
    flux_unet = place("unet", "flux", "dev")
    assert folder_problem("/c/models/diffusion_models/f.safetensors", flux_unet) is None
    assert folder_problem("/c/models/unet/f.safetensors", flux_unet) is None  # alias of diffusion_models
    assert folder_problem("/d/f.safetensors", flux_unet) is None  # path names no UI
    why = folder_problem("/c/models/checkpoints/f.safetensors", flux_unet)
    assert why is not None and "models/diffusion_models" in str(why)
    wan = place("unet", "wan")
    assert "cannot load" in str(folder_problem("/w/models/Stable-diffusion/wan.safetensors", wan))
    assert folder_problem("/c/models/checkpoints/x.bin", place("unknown", None)) is None


def _comfy_tree(tmp_path: Path, *, with_t5: bool = True) -> Path:
    models = tmp_path / "ComfyUI" / "models"
    for sub in ("diffusion_models", "text_encoders", "checkpoints"):
        (models / sub).mkdir(parents=True)
    write_sparse_safetensors(models / "diffusion_models" / "flux1-dev.safetensors", flux())
    write_sparse_safetensors(models / "text_encoders" / "clip_l.safetensors", clip_l())
    if with_t5:
        write_sparse_safetensors(models / "text_encoders" / "t5xxl_fp16.safetensors", t5xxl())
    return models / "diffusion_models" / "flux1-dev.safetensors"


def test_info_json_placement_and_found_companions(tmp_path: Path) -> None:
    model = _comfy_tree(tmp_path)
    out = CliRunner().invoke(main_group, terminal_width=200, args=["info", "--json", str(model)])
    assert out.exit_code == 0, out.output
    d = json.loads(out.output)
    pl = d["placement"]
    assert pl["targets"]["comfyui"]["folder"] == "models/diffusion_models"
    assert pl["companions"]["found"] == {
        "clip_l": "models/text_encoders/clip_l.safetensors",
        "t5xxl": "models/text_encoders/t5xxl_fp16.safetensors",
    }
    assert d["lineage"] is None  # not an SDXL-shaped file
    notes = d["advice"]["notes"]
    assert any("ComfyUI/models/diffusion_models" in n and "Load Diffusion Model" in n for n in notes)


def test_info_text_shows_placement(tmp_path: Path) -> None:
    model = _comfy_tree(tmp_path, with_t5=False)
    out = CliRunner().invoke(main_group, terminal_width=200, args=["info", str(model)])
    assert out.exit_code == 0, out.output
    assert "DualCLIPLoader (type flux)" in out.output and "Load Diffusion Model" in out.output


def test_lineage_in_info_from_civitai_sidecar(tmp_path: Path) -> None:
    from tests.families import sdxl

    model = write_sparse_safetensors(tmp_path / "model.safetensors", sdxl() | {"v_pred": ((0,), "F32")})
    (tmp_path / "model.civitai.info").write_text(json.dumps({"baseModel": "NoobAI"}))
    rep = inspect(model, read_values=False).to_dict()
    lin = rep["lineage"]
    assert lin["base"] == "noobai" and lin["base_source"] == "model.civitai.info baseModel"
    assert lin["v_prediction"] is True and lin["implies"] == ["v_prediction_sampler"]
    assert any("sd_xl_v.yaml" in n for n in rep["advice"]["notes"])


def test_advice_line_for_a_missing_placement() -> None:
    assert advice_line(place("unknown", None), "thing") is None


def _row(i: int, path: str, kind: str, family: str | None, variant: str | None) -> dict:
    return {"id": i, "path": path, "kind": kind, "family": family, "variant": variant, "format": "safetensors"}


def test_library_companions_and_problems() -> None:
    rows = [
        _row(1, "/c/models/diffusion_models/flux.safetensors", "unet", "flux", "dev"),
        _row(2, "/c/models/text_encoders/t5.safetensors", "text_encoder", None, "t5xxl"),
        _row(3, "/c/models/text_encoders/clip_l.safetensors", "text_encoder", None, "clip_l"),
        _row(4, "/c/models/vae/ae.safetensors", "vae", None, "16ch"),
        _row(5, "/c/models/checkpoints/sd15.safetensors", "checkpoint", "sd1", "base"),
    ]
    index = CompanionIndex.of(rows)
    comps = companions_of(placement_of(rows[0]), index)
    assert [(c["id"], [f["id"] for f in c["files"]]) for c in comps] == [("t5xxl", [2]), ("clip_l", [3]), ("16ch", [4])]
    assert all(placement_problems(r, index) == [] for r in rows)  # everything where it belongs
    partial = CompanionIndex.of(rows[2:])
    codes = [p["code"] for p in placement_problems(rows[0], partial)]
    assert codes == ["missing_companions"]
    wrong = _row(6, "/c/models/checkpoints/flux.safetensors", "unet", "flux", "dev")
    assert [p["code"] for p in placement_problems(wrong, index)] == ["misplaced"]


def test_library_report_and_web_page(tmp_path: Path) -> None:
    from sdmodel.library.catalog import Catalog
    from sdmodel.library.report import build_report
    from sdmodel.library.scanning import scan_library
    from sdmodel.web.pages import model_page

    model = _comfy_tree(tmp_path, with_t5=False)
    write_sparse_safetensors(tmp_path / "ComfyUI" / "models" / "checkpoints" / "unet.safetensors", unet_only(sd1()))
    with Catalog(tmp_path / "cat.db") as cat:
        scan_library(cat, [(tmp_path / "ComfyUI" / "models", "comfyui")], jobs=1)
        rep = build_report(cat)
        codes = {(Path(p["path"]).name, p["code"]) for p in rep["problems"]}
        assert ("flux1-dev.safetensors", "missing_companions") in codes
        assert ("clip_l.safetensors", "misplaced") not in codes
        f = cat.get_by_path(model)
        assert f is not None
        page = model_page(cat, f)
        assert "Where it goes" in page and "clip_l.safetensors" in page and "not in the catalog" in page


@pytest.mark.parametrize(
    ("family", "variant", "encoders", "vae", "clip"),
    [
        ("hunyuan_video", "t2v", ("llama3_8b", "clip_l"), "hunyuan_video", ("DualCLIPLoader", "hunyuan_video")),
        (
            "hunyuan_video",
            "1.5",
            ("qwen25vl_7b", "byt5_small"),
            "hunyuan_video_1.5",
            ("DualCLIPLoader", "hunyuan_video_15"),
        ),
        ("flux2", "dev", ("mistral_small",), "32ch", ("CLIPLoader", "flux2")),
        ("flux2", "klein-4b", ("qwen3_4b",), "32ch", ("CLIPLoader", "flux2")),
        ("z_image", "base", ("qwen3_4b",), "16ch", ("CLIPLoader", "lumina2")),
    ],
)
def test_companions_follow_the_variant(
    family: str, variant: str, encoders: tuple[str, ...], vae: str, clip: tuple[str, str]
) -> None:
    c = place("unet", family, variant).companions
    assert c is not None
    assert (c.text_encoders, c.vae, (c.clip_loader, c.clip_type)) == (encoders, vae, clip)
