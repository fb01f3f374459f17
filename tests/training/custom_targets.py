"""A backbone callable defined outside src/, to show ``load_model(allowed_targets=...)``."""

from __future__ import annotations

from torch import nn

from src.models.backbone import timm_backbone


def lab_backbone(**kwargs) -> nn.Module:
    """A lab's own backbone factory: here timm's, under another name (so a timm checkpoint's weights fit)."""
    return timm_backbone(**kwargs)
