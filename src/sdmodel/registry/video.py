"""Video families: one ``Family`` record each, and the signatures of their diffusion networks
(same shape as ``image.py``)."""

from __future__ import annotations

from sdmodel.registry.model import Family, Signature

FAMILIES: tuple[Family, ...] = ()

SIGNATURES: tuple[Signature, ...] = ()
