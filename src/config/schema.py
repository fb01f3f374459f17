"""Typed schemas of ``conf/train.yaml``, ``conf/extract.yaml`` and ``conf/predict.yaml`` (Hydra structured configs).

Each primary config lists its schema first in its defaults list (``- train_schema``), so Hydra checks
the type of every plain key while composing: ``batch_size=abc``, ``epochs=5`` or ``outcomes=tumor_type``
fail there with a message naming the key (``full_key: batch_size``). Config groups (model, loss,
optimizer, ...) stay free-form (``Any``): each is checked where it is built, and by ``src.config.validate``.
Defaults live in the YAML files, not here: a schema field without a value in the YAML is an error.
Choices are ``StrEnum``s, so a value equals, prints and serialises as its word (``cfg.training_balance ==
"auto"``, ``f"{cfg.training_balance}"`` is ``auto``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


class ClinicalBlank(StrEnum):
    """``clinical_blank``: what to do with slides that have a blank clinical input."""

    drop = "drop"
    error = "error"


class OutcomeBlank(StrEnum):
    """``outcome_blank``: what to do with slides that have a blank outcome (or event)."""

    drop = "drop"
    error = "error"


class OnSlideError(StrEnum):
    """``on_slide_error``: what a run does with a slide whose tiles cannot be prepared (corrupt, truncated...)."""

    stop = "stop"
    skip = "skip"


class Balance(StrEnum):
    """``training_balance`` / ``validation_balance`` (which of them fits an outcome kind: ``validate``)."""

    auto = "auto"
    tile = "tile"
    slide = "slide"
    patient = "patient"
    category = "category"
    event = "event"
    none = "none"


class SlideChoice(StrEnum):
    """``slides`` of ``extract.py``."""

    annotated = "annotated"
    all = "all"


@dataclass
class PathsConfig:
    """The ``paths`` group: where the repository, data and outputs live."""

    root_dir: str = MISSING
    data_dir: str = MISSING
    output_dir: str = MISSING


@dataclass
class DataloaderConfig:
    """``dataloader``: loader processes and the evaluation batch size."""

    num_workers: int = MISSING
    eval_batch_size: int = MISSING


@dataclass
class TrainConfig:
    """Schema of ``conf/train.yaml`` (see the comments there for what each key means)."""

    paths: PathsConfig = field(default_factory=PathsConfig)
    project: Any = MISSING
    tiles: Any = MISSING
    dataset: Any = MISSING
    encoder: Any = None  # only with dataset=features
    model: Any = MISSING
    loss: Any = MISSING
    optimizer: Any = MISSING
    scheduler: Any = MISSING
    normalizer: Any = MISSING
    augment: Any = MISSING
    validation: Any = MISSING
    trainer: Any = MISSING
    logger: Any = MISSING
    callbacks: Any = MISSING
    progress: Any = None  # src.training.progress.PlainProgress: progress lines in logs that are not a terminal

    name: str = MISSING
    seed: int = MISSING
    outcomes: list[str] = MISSING
    event_header: str | None = MISSING
    input_header: list[str] = MISSING
    clinical_blank: ClinicalBlank = MISSING
    outcome_blank: OutcomeBlank = MISSING
    on_slide_error: OnSlideError = MISSING
    epochs: list[int] = MISSING
    batch_size: int = MISSING
    training_balance: Balance = MISSING
    validation_balance: Balance = MISSING
    l1: float = MISSING
    channels_last: Any = MISSING  # auto | true | false (src.training.module.channels_last_setting)
    dataloader: DataloaderConfig = field(default_factory=DataloaderConfig)
    torch_threads: Any = MISSING  # auto | N (src.infra.processes.thread_setting)
    run_dir: str | None = MISSING
    resume: str | None = MISSING
    results_log: str = MISSING
    optimized_metric: str = MISSING
    hparams_search: Any = MISSING


@dataclass
class ExtractConfig:
    """Schema of ``conf/extract.yaml``."""

    paths: PathsConfig = field(default_factory=PathsConfig)
    project: Any = MISSING
    tiles: Any = MISSING
    dataset: Any = MISSING

    slides: SlideChoice = MISSING
    workers: int = MISSING
    thumbnails: bool = MISSING
    progress: bool = MISSING
    part: str | None = None  # i/n: the i-th of n parts of the slides (src.extraction.parts)


@dataclass
class PredictConfig:
    """Schema of ``conf/predict.yaml``."""

    paths: PathsConfig = field(default_factory=PathsConfig)

    model_path: str = MISSING
    epoch: int | None = MISSING
    slides: Any = MISSING  # a folder or an annotations file (str), or a list of slide files
    slides_dir: str | None = MISSING
    annotations: str | None = MISSING
    outcomes: list[str] = MISSING
    backend: str = MISSING
    mpp_override: float | None = MISSING
    stride_div: int | None = MISSING
    as_shards: bool = MISSING
    batch_size: int = MISSING
    threads: int = MISSING
    torch_threads: Any = MISSING  # auto | N (src.infra.processes.thread_setting)
    heatmaps: bool = MISSING
    heatmap_px: int = MISSING
    allowed_targets: list[str] = MISSING
    allowed_kinds: list[str] = MISSING
    encoder_weights: str | None = MISSING
    device: str = MISSING
    outdir: str | None = MISSING


#: ConfigStore name -> schema; each name is the first entry of a primary config's defaults list.
SCHEMAS: dict[str, type] = {
    "train_schema": TrainConfig,
    "extract_schema": ExtractConfig,
    "predict_schema": PredictConfig,
}


def store_schemas() -> None:
    """Put the schemas in Hydra's ConfigStore (storing again replaces them, so this is idempotent)."""
    store = ConfigStore.instance()
    for name, node in SCHEMAS.items():
        store.store(name=name, node=node)
