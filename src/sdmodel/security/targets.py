"""Class paths that the model configs of A1111 and Stability's ``sgm`` name in ``target:``.

A1111 builds the model with ``instantiate_from_config``: ``target`` is imported and called with
``params``, so a sidecar ``.yaml`` naming anything else is code. Collected from the ``configs/``
folders of AUTOMATIC1111/stable-diffusion-webui (v1, v1-inpainting, v2, v2-midas, unCLIP,
instruct-pix2pix, alt-diffusion, sd_xl_base/refiner/inpaint/v, sd3) and Stability-AI/generative-models.
"""

from __future__ import annotations

ALLOWED_TARGETS: frozenset[str] = frozenset(
    {
        "ldm.models.diffusion.ddpm.LatentDiffusion",
        "ldm.models.diffusion.ddpm.LatentInpaintDiffusion",
        "ldm.models.diffusion.ddpm.LatentDepth2ImageDiffusion",
        "ldm.models.diffusion.ddpm.LatentUpscaleDiffusion",
        "ldm.models.diffusion.ddpm.LatentFinetuneDiffusion",
        "ldm.models.diffusion.ddpm.ImageEmbeddingConditionedLatentDiffusion",
        "ldm.models.autoencoder.AutoencoderKL",
        "ldm.models.autoencoder.IdentityFirstStage",
        "ldm.modules.midas.api.MiDaSInference",
        "ldm.lr_scheduler.LambdaLinearScheduler",
        "torch.nn.Identity",
        "cldm.cldm.ControlLDM",
        "cldm.cldm.ControlNet",
        "cldm.cldm.ControlledUnetModel",
        "modules.models.diffusion.ddpm_edit.LatentDiffusion",
        "modules.xlmr.BertSeriesModelWithTransformation",
        "modules.xlmr_m18.BertSeriesModelWithTransformation",
        "modules.models.sd3.sd3_model.SD3Inferencer",
        "sgm.models.diffusion.DiffusionEngine",
        "sgm.models.autoencoder.AutoencoderKLInferenceWrapper",
        "sgm.models.autoencoder.AutoencodingEngine",
        "sgm.modules.GeneralConditioner",
        "sgm.modules.encoders.modules.GeneralConditioner",
        # training-data sections of published configs (not instantiated by UIs)
        "main.DataModuleFromConfig",
        "edit_dataset.EditDataset",
    }
)

# Modules whose classes are all torch modules of the UNet, encoders and samplers.
ALLOWED_TARGET_MODULES: frozenset[str] = frozenset(
    {
        "ldm.modules.diffusionmodules.openaimodel",
        "ldm.modules.encoders.modules",
        "ldm.modules.diffusionmodules.upscaling",
        "sgm.modules.diffusionmodules.openaimodel",
        "sgm.modules.diffusionmodules.denoiser",
        "sgm.modules.diffusionmodules.denoiser_scaling",
        "sgm.modules.diffusionmodules.denoiser_weighting",
        "sgm.modules.diffusionmodules.discretizer",
        "sgm.modules.diffusionmodules.guiders",
        "sgm.modules.diffusionmodules.sampling",
        "sgm.modules.diffusionmodules.model",
        "sgm.modules.encoders.modules",
        "sgm.modules.autoencoding.regularizers",
        "sgm.modules.autoencoding.losses",
    }
)


def target_allowed(target: str) -> bool:
    """Whether a ``target:`` class path is one the known SD configs use."""
    if target in ALLOWED_TARGETS:
        return True
    module, _, name = target.rpartition(".")
    return module in ALLOWED_TARGET_MODULES and name.isidentifier() and not name.startswith("_")
