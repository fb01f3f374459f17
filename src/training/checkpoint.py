"""Self-describing checkpoints.

The model's params (outcomes, clinical fit, hyper-parameters) inside each ``.ckpt``, and rebuilding a model
for inference from that file alone, without running code the file may carry: it is read with the
weights-only unpickler, and the model is built only from targets this workbench's model configs name (or
that the caller allows).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
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

from src.command_keys import config_key
from src.config.targets import target_name
from src.data.clinical import ClinicalEncoder
from src.errors import UnsafeFileError
from src.models.scaling import DEFAULT_MEAN, DEFAULT_STD
from src.models.weights_file import load_torch_file
from src.outcomes import Outcome, foreign_kinds, kind_problems, outcome_from_dict
from src.training.model_inputs import check_bag, check_tiles
from src.trust import TARGET_KEY, AllowList, named, offline_tree, unsafe_nodes

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


def load_model(
    path: str | Path,
    allowed_targets: Iterable[str | Callable] = (),
    allowed_kinds: Iterable[str] = (),
) -> LoadedModel:
    """Rebuild a model for inference from one of our ``.ckpt`` files, needing nothing else.

    Every weight and buffer comes from the checkpoint, the input scaling (``input_mean``/``input_std``)
    included. A checkpoint from before the model owned its scaling has no such buffers; all of those were
    trained on tiles scaled to [-1, 1], so it loads with mean = std = 0.5 (logged as a warning).

    Nothing the file carries is run or fetched unless allowed (the rules of :mod:`src.trust`). The file is
    read with the weights-only unpickler (tensors and plain data). Its stored model config (``hp.model``) is
    checked as a whole before anything is built: every ``_target_`` in it, nested nodes and ``_args_``
    included, must be one that ``conf/model/*.yaml`` places at that key (``backbone._target_`` only from
    the presets' ``backbone`` nodes), or in ``allowed_targets``; it may hold no ``${...}`` interpolation and
    only plain values; no key or value that fetches or opens weights (``pretrained_cfg_overlay``, ``url``,
    ``hf-hub:...``); ``pretrained`` is forced off and ``weights_path`` cleared in every node. An outcome kind
    from a module outside ``src/outcomes`` (``loss.kind=pkg.module``) is imported only when listed in
    ``allowed_kinds``.

    Args:
        path: A ``checkpoints/epoch{N}.ckpt`` written by :class:`~src.training.fold_trainer.FoldTrainer`.
        allowed_targets: More ``_target_``s the model may be built from, for a model trained with your own
            backbone callable (``model.backbone._target_=my_lab.models.cnn``): dotted names or the callables.
        allowed_kinds: Outcome kinds from modules outside ``src/outcomes`` that may be imported, by the dotted
            module name the checkpoint stores (``my_lab.ordinal``).

    Raises:
        UnsafeFileError: the file holds pickled objects beyond tensors and plain data, or its params name a
            target or kind not allowed (the message lists them); nothing from it was run or built.
        ValueError: the file is not a checkpoint written by this workbench's Trainer.
    """
    checkpoint = load_torch_file(path)
    params = checkpoint.get(PARAMS_KEY) if isinstance(checkpoint, dict) else None
    if not isinstance(params, dict) or not isinstance(params.get("hp"), dict) or "model" not in params["hp"]:
        raise ValueError(f"{path} holds no '{PARAMS_KEY}' with hp.model: it was not written by src.training.Trainer")
    check_code(path, params, allowed_targets, allowed_kinds)
    outcomes = [outcome_from_dict(o) for o in params["outcomes"]]
    encoder = ClinicalEncoder.from_dict(params["clinical_encoder"])
    # every node offline: pretrained off, weights_path cleared (the checkpoint's own weights replace them)
    model_cfg = OmegaConf.create(offline_tree(params["hp"]["model"], "hp.model")[0])
    net = instantiate(model_cfg)(
        outcome_sizes=[o.n_outputs for o in outcomes], n_clinical=encoder.width, **(params.get("net_kwargs") or {})
    )
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


def check_code(
    path: str | Path,
    params: dict[str, Any],
    allowed_targets: Iterable[str | Callable] = (),
    allowed_kinds: Iterable[str] = (),
) -> None:
    """Refuse a checkpoint's params that would make :func:`load_model` import or call code not allowed.

    Args:
        path: The checkpoint, to name in the message.
        params: Its ``workbench_params``.
        allowed_targets: ``_target_``s allowed besides those of ``conf/model/*.yaml``.
        allowed_kinds: Dotted outcome-kind modules allowed besides those of ``src/outcomes``.

    Raises:
        UnsafeFileError: naming the file, each offending key and value, and how to allow them.
    """
    rules = model_rules(allowed_targets)
    model_cfg = params["hp"]["model"]
    problems = unsafe_nodes(model_cfg, rules, "hp.model")
    if not isinstance(model_cfg, dict) or "_target_" not in model_cfg:
        problems.append("hp.model has no _target_ (the model it would build)")
    if not problems:  # a plain tree: may it fetch or open anything?
        problems += offline_tree(model_cfg, "hp.model")[1]
    problems += unsafe_nodes(params.get("net_kwargs") or {}, (), "net_kwargs")  # passed to the model's callable
    problems += kind_problems(params.get("outcomes"), allowed_kinds)
    if not problems:
        return
    targets = sorted({t for p, t in named(model_cfg, [TARGET_KEY]) if isinstance(t, str) and not rules.allows(p, t)})
    kinds = foreign_kinds(params.get("outcomes"), allowed_kinds)
    raise UnsafeFileError(
        f"{path} was not loaded: its params name code that is not allowed, and nothing from it was built or "
        "imported:\n  - " + "\n  - ".join(problems) + "\nAllowed model targets: those of conf/model/*.yaml "
        f"({', '.join(sorted(frozenset().union(*rules.by_position.values())))}), each at the key where "
        "conf/model places it, and load_model's allowed_targets (anywhere); allowed outcome kinds: those of "
        "src/outcomes and load_model's allowed_kinds; a stored config may not name weights to fetch or open "
        "(pretrained is forced off, weights_path cleared)." + _allow_hint(targets, kinds)
    )


def model_rules(allowed_targets: Iterable[str | Callable] = ()) -> AllowList:
    """The ``_target_``s a stored ``hp.model`` may name, by position (rule (b) of :mod:`src.trust`).

    Those of ``conf/model/*.yaml`` at the key where they stand there (a ``backbone._target_`` only from the
    ``backbone`` nodes), and ``allowed_targets`` anywhere.
    """
    return AllowList.from_conf("model", anywhere={target_name(t) for t in allowed_targets})


def _allow_hint(targets: list[str], kinds: list[str]) -> str:
    """How to allow ``targets`` and ``kinds``: the running command's keys (predict.py), else load_model's arguments."""
    given = [(name, values) for name, values in (("allowed_targets", targets), ("allowed_kinds", kinds)) if values]
    if not given:
        return ""
    keys = [config_key(name) for name, _ in given]
    if all(keys):  # a command line: key=[a.b,c.d]
        allow = " ".join(f"{key}=[{','.join(values)}]" for key, (_, values) in zip(keys, given, strict=True))
    else:
        allow = "load_model(path" + "".join(f", {name}={values}" for name, values in given) + ")"
    return f" If you trust this checkpoint, allow them: {allow}."


def predict(model: LoadedModel, images: torch.Tensor, annotations: pd.DataFrame | None = None) -> list[np.ndarray]:
    """Head outputs for a batch of tiles of slides described by ``annotations`` rows.

    Args:
        model: From :func:`load_model`.
        images: uint8 (batch, 3, tile_px, tile_px) RGB tiles as ``TileDataset`` gives them (the model scales
            them itself); stain-normalize them first if the model was trained with a normalizer
            (``from_fit(model.params["norm_fit"]).normalize(images)``, as training and ``predict.py`` do).
            Ignored by ``drop_images`` models.
        annotations: One row per tile (or one for all of them) with the ``input_header`` columns, or ``None``
            for no clinical inputs.

    Returns:
        One array per outcome: softmax probabilities for categorical outcomes, values in the column's units
        for linear ones.

    Raises:
        ValueError: the model is a MIL model (use :func:`predict_bag`), or ``images`` are not uint8 tiles of its
            size (the message names the model's kind, what it takes and what it got).
    """
    check_tiles(model.net, model.params, images)
    clinical = model.clinical(annotations) if annotations is not None else torch.zeros(len(images), 0)
    if len(clinical) == 1 and len(images) > 1:
        clinical = clinical.expand(len(images), -1)  # one slide's row for all its tiles
    with torch.no_grad():
        outputs = model.net(images, clinical)
    return [outcome.predict(o) for o, outcome in zip(outputs, model.outcomes, strict=True)]


def predict_bag(
    model: LoadedModel, features: torch.Tensor, annotations: pd.DataFrame | None = None
) -> tuple[list[np.ndarray], np.ndarray | None]:
    """A MIL model's prediction for one bag of tile features, and its attention over the tiles.

    Args:
        model: A MIL checkpoint from :func:`load_model` (trained with ``dataset=features``).
        features: ``(n_tiles, n_features)`` features of one slide from the encoder its bags were made with
            (a bag file's ``features``; ``src.inference.mil`` computes them from a slide).
        annotations: The slide's annotation row with the ``input_header`` columns, or ``None``.

    Returns:
        ``(outputs, attention)``: one ``(1, size)`` array per outcome (as :func:`predict`) and the ``(n_tiles,)``
        attention (None for a model without attention).

    Raises:
        ValueError: the model is a tile model (use :func:`predict`), or ``features`` is not one bag of the width
            its bags had (the message names the model's kind, the width it takes and what it got).
    """
    bag = check_bag(model.net, model.params, features)
    clinical = model.clinical(annotations) if annotations is not None else torch.zeros(1, 0)
    with torch.no_grad():
        outputs, attention = model.net(bag[None], None, clinical, True)
    predictions = [outcome.predict(o) for o, outcome in zip(outputs, model.outcomes, strict=True)]
    return predictions, (attention[0].numpy() if attention is not None else None)
