"""The model(s) a prediction uses: one checkpoint, a fold folder's, or every fold of a run (an ensemble).

Everything needed to feed a model comes from its checkpoint (``workbench_params``): the tile settings,
the stain-normalizer fit, the clinical encoder, the outcomes with their class names; the input scaling is
in its buffers. An ensemble's prediction of a tile is the mean of its members' predictions (probabilities,
values, risks).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from src.data.normalizers import StainNormalizer, from_fit
from src.data.tile_colour import pooled_stats
from src.errors import UnsafeFileError
from src.evaluation.heatmaps import HeatmapLayer
from src.outcomes import Outcome
from src.slides.tile_settings import TileSettings
from src.training.checkpoint import LoadedModel, load_model
from src.training.model_inputs import check_tiles

log = logging.getLogger(__name__)

CHECKPOINT_NAME = re.compile(r"epoch(\d+)\.ckpt")


def fold_checkpoint(fold: Path, epoch: int | None = None) -> Path:
    """The ``checkpoints/epoch{N}.ckpt`` of a fold folder: ``epoch``, or the largest N saved.

    The largest saved epoch is the last of the run's ``epochs``, or the stop epoch after an early stop.

    Raises:
        FileNotFoundError: the fold has no such checkpoint (naming the fold and the epochs it has).
    """
    saved = {
        int(match.group(1)): path
        for path in (fold / "checkpoints").glob("epoch*.ckpt")
        if (match := CHECKPOINT_NAME.fullmatch(path.name))
    }
    if not saved:
        raise FileNotFoundError(f"{fold} has no checkpoints/epoch{{N}}.ckpt: the fold saved no model")
    chosen = max(saved) if epoch is None else int(epoch)
    if chosen not in saved:
        raise FileNotFoundError(f"{fold} has no checkpoints/epoch{chosen}.ckpt (epoch={epoch}); it has {sorted(saved)}")
    return saved[chosen]


def checkpoint_paths(model_path: str | Path, epoch: int | None = None) -> list[Path]:
    """The checkpoint(s) that ``model_path`` names: a ``.ckpt`` file, a fold folder, or a run folder.

    Args:
        model_path: A checkpoint file; a fold folder (with ``checkpoints/``); or a run folder (with
            ``fold*/checkpoints/``: every fold, in fold order).
        epoch: For folders, the epoch to take (``None``: each fold's largest saved epoch).

    Raises:
        FileNotFoundError: nothing there, or a fold without the epoch asked.
        ValueError: a folder that is neither a fold nor a run folder.
    """
    path = Path(model_path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"model_path={str(path)!r}: no such checkpoint file or folder")
    if (path / "checkpoints").is_dir():
        return [fold_checkpoint(path, epoch)]
    folds = [p for p in path.glob("fold*") if (p / "checkpoints").is_dir() and p.name[4:].isdigit()]
    if not folds:
        raise ValueError(
            f"model_path={str(path)!r} is neither a checkpoint (.ckpt), a fold folder (with checkpoints/) nor a "
            "run folder (with fold1/checkpoints/, ...)"
        )
    status = path / "status.json"
    if status.is_file() and json.loads(status.read_text()).get("status") != "completed":
        log.warning("Run %s is not completed (status.json): its folds may be unfinished", path)
    return [fold_checkpoint(fold, epoch) for fold in sorted(folds, key=lambda p: int(p.name[4:]))]


def checkpoint_epoch(path: Path) -> int | None:
    """N of an ``epoch{N}.ckpt`` file name (None for another name)."""
    match = CHECKPOINT_NAME.fullmatch(path.name)
    return int(match.group(1)) if match else None


@dataclass
class Member:
    """One model of an ensemble, with its own fitted normalizer and clinical encoder.

    Attributes:
        path: Its checkpoint.
        model: The loaded model.
        normalizer: Its stain normalizer, rebuilt from the checkpoint's ``norm_fit`` (None: none).
    """

    path: Path
    model: LoadedModel
    normalizer: StainNormalizer | None


class ModelSet:
    """The members of a prediction (one, or the folds of a run); they must agree on outcomes and tiles.

    Args:
        members: The loaded models.

    Raises:
        ValueError: members that disagree on the outcomes (names, kinds, classes) or the tile settings.
    """

    def __init__(self, members: Sequence[Member]) -> None:
        self.members = list(members)
        first = self.members[0]
        self.outcomes: list[Outcome] = first.model.outcomes
        self.tiles = tile_settings(first)
        for member in self.members[1:]:
            if [o.to_dict() for o in member.model.outcomes] != [o.to_dict() for o in self.outcomes]:
                raise ValueError(f"{member.path} predicts other outcomes than {first.path}: they cannot be averaged")
            if tile_settings(member) != self.tiles:
                raise ValueError(f"{member.path} was trained on other tile settings than {first.path}")
        self.input_header: list[str] = list(first.model.encoder.columns)
        # the training slides' colour (all members' together); None for a model that records none (MIL, older)
        self.colour = pooled_stats([m.model.params.get("tile_colour") for m in self.members])
        for member in self.members:
            member.model.net.to(memory_format=torch.channels_last)  # ~1.7x faster convolutions on CPU

    @property
    def paths(self) -> list[Path]:
        """The members' checkpoints."""
        return [m.path for m in self.members]

    @property
    def epochs(self) -> list[int | None]:
        """The epoch of each member's checkpoint (from its file name)."""
        return [checkpoint_epoch(p) for p in self.paths]

    def output_columns(self) -> list[str]:
        """Every prediction column, outcome by outcome."""
        return [c for o in self.outcomes for c in o.output_columns()]

    def clinical(self, rows: pd.DataFrame) -> list[torch.Tensor]:
        """Per member, the encoded clinical inputs of annotation ``rows`` (errors name the slide and column)."""
        return [m.model.clinical(rows) for m in self.members]

    def predict(self, images: torch.Tensor, clinical: Sequence[torch.Tensor]) -> dict[str, np.ndarray]:
        """The prediction columns of a batch, averaged over the members.

        Args:
            images: uint8 ``(batch, 3, H, W)`` tiles as the shards hold them (before stain normalization).
            clinical: Per member, ``(1, width)`` or ``(batch, width)`` encoded clinical inputs.
        """
        first = self.members[0].model
        check_tiles(first.net, first.params, images, "ModelSet.predict()")  # not a MIL model, tiles of its size
        total: dict[str, np.ndarray] = {}
        for member, inputs in zip(self.members, clinical, strict=True):
            batch = images
            if member.normalizer is not None:  # the batched normalizer, as training's validation batches
                batch = member.normalizer.normalize(images)
            batch = batch.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                outputs = member.model.net(batch, inputs.expand(len(images), -1))
            for outcome, output in zip(self.outcomes, outputs, strict=True):
                for column, values in prediction_columns(outcome, output).items():
                    total[column] = total.get(column, 0) + values.astype(np.float64)
        return {column: (values / len(self.members)).astype(np.float32) for column, values in total.items()}

    def heatmap_layers(self) -> dict[str, list[HeatmapLayer]]:
        """Outcome name → its heatmap panels, on the members' mean head scale."""
        layers = {}
        for index, outcome in enumerate(self.outcomes):
            # buffers of the net (nn.Module types them as Tensor | Module)
            means = [float(torch.as_tensor(m.model.net.output_mean)[index]) for m in self.members]
            scales = [float(torch.as_tensor(m.model.net.output_scale)[index]) for m in self.members]
            layers[outcome.name] = outcome.heatmap_layers(float(np.mean(means)), float(np.mean(scales)))
        return layers


def prediction_columns(outcome: Outcome, output: torch.Tensor) -> dict[str, np.ndarray]:
    """The prediction columns (no truth) of an outcome's head outputs, named as in training's tables."""
    blank = np.zeros((len(output), outcome.n_targets), np.float32)
    columns = outcome.tile_columns(output.float(), blank)
    return {column: np.asarray(columns[column]) for column in outcome.output_columns()}


def truth_columns(outcome: Outcome, part: np.ndarray) -> dict[str, np.ndarray]:
    """The truth columns of an outcome's encoded targets ``part`` (one row per tile), as in training's tables."""
    blank = torch.zeros(len(part), outcome.n_outputs)
    columns = outcome.tile_columns(blank, part)
    return {column: np.asarray(columns[column]) for column in outcome.truth_columns()}


def tile_settings(member: Member) -> TileSettings:
    """The tile settings a member was trained on (its checkpoint's ``tile_settings``).

    Raises:
        ValueError: a checkpoint without tile settings (a clinical-only model reads no tiles).
    """
    settings = member.model.params.get("tile_settings")
    if not settings:
        raise ValueError(f"{member.path} records no tile settings: it reads no tiles (model.drop_images)")
    return TileSettings.from_config(settings)


def load_members(
    paths: Iterable[Path], allowed_targets: Iterable[str] = (), allowed_kinds: Iterable[str] = ()
) -> ModelSet:
    """Load each checkpoint safely (:func:`~src.training.checkpoint.load_model`) with its normalizer.

    Raises:
        UnsafeFileError: a file that pickles code, names code not allowed, or a normalizer class that
            ``conf/normalizer/*.yaml`` does not name (nothing from it is imported).
        ValueError: a file that is not one of our checkpoints, or one from an incompatible version (its
            params or weights do not fit this code), naming the file.
    """
    members = []
    for path in paths:
        try:
            model = load_model(path, allowed_targets=list(allowed_targets), allowed_kinds=list(allowed_kinds))
        except UnsafeFileError:
            raise
        except (KeyError, TypeError, ValueError, RuntimeError, EOFError) as error:
            raise ValueError(
                f"model_path: {path} is not a checkpoint this version of the workbench can use "
                f"({type(error).__name__}: {error}); give a checkpoints/epoch{{N}}.ckpt written by train.py or the "
                "Trainer API, or its fold or run folder"
            ) from error
        members.append(Member(Path(path), model, normalizer(Path(path), model.params.get("norm_fit"))))
        log.info("Model %s: outcomes %s", path, [o.name for o in model.outcomes])
    return ModelSet(members)


def normalizer(path: Path, fit: dict | None) -> StainNormalizer | None:
    """The fitted stain normalizer of a checkpoint's ``norm_fit``, importing only the classes of ``conf/normalizer``."""
    if not fit:
        return None
    try:
        return from_fit(fit)
    except UnsafeFileError as error:
        raise UnsafeFileError(f"{path} was not loaded: its {error}") from None
