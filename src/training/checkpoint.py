"""Self-describing checkpoints.

The model's params (outcomes, clinical fit, hyper-parameters) inside each ``.ckpt``, and rebuilding a model
for inference from that file alone.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from src.data.clinical import ClinicalEncoder
from src.models.scaling import DEFAULT_MEAN, DEFAULT_STD
from src.outcomes import Outcome, outcome_from_dict

PARAMS_KEY = "workbench_params"

log = logging.getLogger(__name__)


class ParamsInCheckpoint(pl.Callback):
    """Stores ``params`` (the content of params.json) in every checkpoint saved during the fit."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = json.loads(json.dumps(params, default=str))  # plain JSON types only

    def on_save_checkpoint(self, trainer: pl.Trainer, module: pl.LightningModule, checkpoint: dict) -> None:
        """Put the params into the checkpoint being saved."""
        checkpoint[PARAMS_KEY] = self.params


@dataclass
class LoadedModel:
    """A trained TileNet with what is needed to feed it.

    Attributes:
        net: The network in eval mode; ``net(images, clinical)`` takes uint8 tiles and returns one output
            per outcome (logits for categorical outcomes, values in the column's units for linear ones).
        outcomes: The outcomes, in head order (class names for categorical ones).
        encoder: The clinical-input encoder fitted on the training slides.
        params: Everything saved with the model (as params.json).
    """

    net: nn.Module
    outcomes: list[Outcome]
    encoder: ClinicalEncoder
    params: dict[str, Any]

    def clinical(self, annotations: pd.DataFrame) -> torch.Tensor:
        """Encode the ``input_header`` columns of ``annotations`` rows as the model expects them."""
        return torch.as_tensor(self.encoder.transform(annotations), dtype=torch.float32)


def load_model(path: str | Path) -> LoadedModel:
    """Rebuild a model for inference from one of our ``.ckpt`` files, needing nothing else.

    Every weight and buffer comes from the checkpoint, the input scaling (``input_mean``/``input_std``)
    included. A checkpoint from before the model owned its scaling has no such buffers; all of those were
    trained on tiles scaled to [-1, 1], so it loads with mean = std = 0.5 (logged as a warning).

    Raises:
        ValueError: the file is not a checkpoint written by this workbench's Trainer.
    """
    checkpoint = torch.load(Path(path), map_location="cpu", weights_only=False)
    params = checkpoint.get(PARAMS_KEY) if isinstance(checkpoint, dict) else None
    if params is None:
        raise ValueError(f"{path} holds no '{PARAMS_KEY}': it was not written by src.training.Trainer")
    outcomes = [outcome_from_dict(o) for o in params["outcomes"]]
    encoder = ClinicalEncoder.from_dict(params["clinical_encoder"])
    model_cfg = OmegaConf.create(params["hp"]["model"])
    backbone_cfg = model_cfg.get("backbone") or {}
    if "weights_path" in backbone_cfg:
        model_cfg.backbone.weights_path = None  # the checkpoint's own weights replace any starting point
    if "pretrained" in backbone_cfg:
        model_cfg.backbone.pretrained = False  # ... so nothing is downloaded either
    net = instantiate(model_cfg)(outcome_sizes=[o.n_outputs for o in outcomes], n_clinical=encoder.width)
    state = {k[len("net.") :]: v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    if "input_mean" in net.state_dict() and "input_mean" not in state:
        # written before TileNet owned its input scaling, when every tile was scaled to [-1, 1]
        log.warning("%s has no saved input scaling (an older checkpoint): using mean = std = 0.5", path)
        state["input_mean"] = torch.tensor(DEFAULT_MEAN).view(1, 3, 1, 1)
        state["input_std"] = torch.tensor(DEFAULT_STD).view(1, 3, 1, 1)
    net.load_state_dict(state)  # strict: every buffer, the input scaling included, comes from the file
    net.eval()
    params.setdefault("input_stats", net.input_stats())
    return LoadedModel(net, outcomes, encoder, params)


def predict(model: LoadedModel, images: torch.Tensor, annotations: pd.DataFrame | None = None) -> list[np.ndarray]:
    """Head outputs for a batch of tiles of slides described by ``annotations`` rows.

    Args:
        model: From :func:`load_model`.
        images: uint8 (batch, 3, tile_px, tile_px) RGB tiles as ``TileDataset`` gives them (the model scales
            them itself); stain-normalize them first if the model was trained with a normalizer
            (``model.params["norm_fit"]``). Ignored by ``drop_images`` models.
        annotations: One row per tile with the ``input_header`` columns, or ``None`` for no clinical inputs.

    Returns:
        One array per outcome: softmax probabilities for categorical outcomes, values in the column's units
        for linear ones.
    """
    clinical = model.clinical(annotations) if annotations is not None else torch.zeros(len(images), 0)
    with torch.no_grad():
        outputs = model.net(images, clinical)
    return [outcome.predict(o) for o, outcome in zip(outputs, model.outcomes, strict=True)]
