"""The A1111 config files sdmodel writes beside SD 2.x checkpoints, as data.

The values are those of Stability's inference configs (Stability-AI/stablediffusion,
configs/stable-diffusion/v2-inference.yaml, v2-inference-v.yaml, v2-inpainting-inference.yaml):
an LDM ``LatentDiffusion`` with the SD2 UNet (OpenCLIP ViT-H context of 1024, linear projections),
the KL VAE and ``FrozenOpenCLIPEmbedder`` with the penultimate layer. The v model differs only by
``parameterization: "v"``; the inpainting model by its class, 9 input channels and hybrid
conditioning. A1111 reads these to build the model; nothing here is ever executed by sdmodel.
"""

from __future__ import annotations

import yaml


def _base() -> dict:
    return {
        "model": {
            "base_learning_rate": 1.0e-4,
            "target": "ldm.models.diffusion.ddpm.LatentDiffusion",
            "params": {
                "linear_start": 0.00085,
                "linear_end": 0.0120,
                "num_timesteps_cond": 1,
                "log_every_t": 200,
                "timesteps": 1000,
                "first_stage_key": "jpg",
                "cond_stage_key": "txt",
                "image_size": 64,
                "channels": 4,
                "cond_stage_trainable": False,
                "conditioning_key": "crossattn",
                "monitor": "val/loss_simple_ema",
                "scale_factor": 0.18215,
                "use_ema": False,
                "unet_config": {
                    "target": "ldm.modules.diffusionmodules.openaimodel.UNetModel",
                    "params": {
                        "use_checkpoint": True,
                        "use_fp16": True,
                        "image_size": 32,
                        "in_channels": 4,
                        "out_channels": 4,
                        "model_channels": 320,
                        "attention_resolutions": [4, 2, 1],
                        "num_res_blocks": 2,
                        "channel_mult": [1, 2, 4, 4],
                        "num_head_channels": 64,
                        "use_spatial_transformer": True,
                        "use_linear_in_transformer": True,
                        "transformer_depth": 1,
                        "context_dim": 1024,
                        "legacy": False,
                    },
                },
                "first_stage_config": {
                    "target": "ldm.models.autoencoder.AutoencoderKL",
                    "params": {
                        "embed_dim": 4,
                        "monitor": "val/rec_loss",
                        "ddconfig": {
                            "double_z": True,
                            "z_channels": 4,
                            "resolution": 256,
                            "in_channels": 3,
                            "out_ch": 3,
                            "ch": 128,
                            "ch_mult": [1, 2, 4, 4],
                            "num_res_blocks": 2,
                            "attn_resolutions": [],
                            "dropout": 0.0,
                        },
                        "lossconfig": {"target": "torch.nn.Identity"},
                    },
                },
                "cond_stage_config": {
                    "target": "ldm.modules.encoders.modules.FrozenOpenCLIPEmbedder",
                    "params": {"freeze": True, "layer": "penultimate"},
                },
            },
        }
    }


def _v() -> dict:
    cfg = _base()
    params = cfg["model"]["params"]
    # parameterization goes first, as in Stability's file (order matters only to human readers)
    cfg["model"]["params"] = {"parameterization": "v", **params}
    return cfg


def _inpainting() -> dict:
    cfg = _base()
    cfg["model"]["base_learning_rate"] = 5.0e-05
    cfg["model"]["target"] = "ldm.models.diffusion.ddpm.LatentInpaintDiffusion"
    params = cfg["model"]["params"]
    params["conditioning_key"] = "hybrid"
    params["unet_config"]["params"]["in_channels"] = 9
    del params["unet_config"]["params"]["use_fp16"]
    return cfg


CONFIGS = {
    "v2-inference.yaml": _base,
    "v2-inference-v.yaml": _v,
    "v2-inpainting-inference.yaml": _inpainting,
}


def config(name: str) -> dict:
    """The config named as A1111 names it (``v2-inference-v.yaml``...). KeyError if we have none."""
    return CONFIGS[name]()


def config_yaml(name: str) -> str:
    header = f"# {name}: A1111 config for this checkpoint, written by sdmodel (values of Stability's config)\n"
    return header + yaml.safe_dump(config(name), sort_keys=False, default_flow_style=None)
