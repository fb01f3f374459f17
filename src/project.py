"""The project layer: from a composed config to checked slides, labels, folds and tiles.

``run()`` (``src.pipeline``) calls these in order, so that everything that can be wrong with the
annotations or the validation plan fails before any tile is extracted:

1. :func:`load_project` — demo generation, annotations, filters (incl. external validation), label checks;
2. :func:`plan_folds` — the folds (they depend on the annotations only);
3. :func:`prepare_tiles` — extraction of the shards that are missing; slides without tissue are dropped, and
   so are slides whose tiles cannot be made, with ``on_slide_error=skip`` (``stop``, the default, stops the run);
4. :func:`fit_plan_to_tiles` — the folds keep only the patients that still have slides.

:func:`dataset_from_config` is the Trainer API's one-line entry (load + tiles).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from src.config.validate import validate
from src.data.dataset import Dataset, SlideLabels
from src.data.sources import tile_source
from src.data.sources.base import raise_failures
from src.data.splits import Fold, SplitPlan, check_class_sizes, plan_splits, study_slides
from src.errors import AnnotationError, ConfigError
from src.losses.outcome_losses import loss_kinds
from src.outcomes import check_targets

log = logging.getLogger(__name__)

#: ``on_slide_error``: what a run does with a slide whose tiles cannot be made (src.config.schema.OnSlideError).
SLIDE_ERROR_POLICIES = ("stop", "skip")


def load_project(cfg: DictConfig, prepare: bool = True) -> tuple[Dataset, SlideLabels]:
    """The study's slides (``dataset.filters``, plus ``validation.filters`` for external validation) and labels.

    Generates the demo project when configured and ``prepare`` (a DDP rank other than 0 passes ``False``:
    it reads the project rank 0 made). Slides with a blank outcome (or event) are left out and
    logged per column, or stop the run with ``outcome_blank=error``.

    Raises:
        AnnotationError: no slides (an annotations file without rows, or filters that keep none), a missing
            column, an outcome that does not fit its loss, a patient with conflicting labels, a slide file that
            is not there or in a format the backend does not read, a ``project.mpp_column`` value that is not a
            positive number, a blank outcome with ``outcome_blank=error`` (the message names the column, slide
            or patient).
    """
    if cfg.project.get("demo") and prepare:
        instantiate(cfg.project.demo).ensure()
    dataset = Dataset(
        cfg.project.annotations,
        slides_dir=cfg.project.slides_dir,
        tiles=cast(dict[str, Any], OmegaConf.to_container(cfg.tiles, resolve=True)),
        shards_dir=cfg.project.shards_dir,
        mpp_override=cfg.project.get("mpp_override"),
        backend=cfg.dataset.get("backend"),
        mpp_column=cfg.project.get("mpp_column"),
    )
    dataset = study_dataset(cfg, dataset)
    outcomes = list(cfg.outcomes)
    kinds = loss_kinds(cfg.loss, outcomes)
    event = cfg.get("event_header")
    label_columns = outcomes + ([event] if event else [])
    missing = [c for c in label_columns if c not in dataset.annotations.columns]
    if missing:
        raise AnnotationError(
            f"Unknown outcome column(s) {missing}: annotation columns are {list(dataset.annotations.columns)}"
        )
    dataset = dataset.drop_blank_outcomes(label_columns, cfg.outcome_blank)
    labels, _ = dataset.labels(outcomes, kinds, event)
    if not cfg.model.drop_images:
        dataset.slide_paths()  # every slide file must be there before folds are planned
    return dataset, labels


def study_dataset(cfg: DictConfig, dataset: Dataset) -> Dataset:
    """The slides passing ``dataset.filters`` (plus ``validation.filters`` for external validation).

    Raises:
        AnnotationError: the filters keep no slide (naming the annotations file and the filters).
    """
    extra = validation_filters(cfg)
    kept = dataset.filter({"slide": study_slides(dataset.annotations, cfg.dataset.filters, extra)})
    if not len(kept):
        filters = cfg.dataset.filters
        filters = OmegaConf.to_container(filters, resolve=True) if isinstance(filters, DictConfig) else filters
        raise AnnotationError(
            f"{dataset.source}: no slides left: dataset.filters={filters}"
            f"{f' and validation.filters={extra}' if extra else ''} keep none of its {len(dataset)} slide(s); "
            "check the filter columns and values (they are compared as text)"
        )
    return kept


def validation_filters(cfg: DictConfig) -> dict | None:
    """``validation.filters`` (external validation) as a plain dict, or ``None``."""
    filters = cfg.validation.get("filters")
    return cast(dict, OmegaConf.to_container(filters, resolve=True)) if filters else None


def plan_folds(cfg: DictConfig, dataset: Dataset, labels: SlideLabels) -> SplitPlan:
    """The run's folds from ``cfg.validation`` (strategy, splits cache, or a forced ``validation.splits`` file).

    Folds depend on the annotations only (not on which slides yield tiles), so they are made before any
    tile is extracted. The cache lives in ``validation.cache_dir``, by default ``splits/`` next to the
    project annotations. Folds are stratified on what each outcome kind names (classes, events), and every
    trained fold is checked (e.g. a Cox fold without training events) before the first one trains. A class
    that some trained fold cannot both train and validate on (fewer patients than folds) is logged, or stops
    the run with ``validation.small_classes=error``.
    """
    validation = cfg.validation
    cache_dir = None
    if validation.get("cache"):
        cache_dir = validation.get("cache_dir") or Path(cfg.project.annotations).parent / "splits"
    plan = plan_splits(
        instantiate(validation.splitter),
        dataset.annotations,
        [column for outcome in labels.outcomes for column in outcome.strata()],
        int(cfg.seed),
        strategy=str(validation.name),
        folds=list(validation.folds) if validation.get("folds") else None,
        cache_dir=cache_dir,
        splits_file=validation.get("splits"),
    )
    check_fold_targets(plan.trained_folds(), dataset, labels)
    check_plan_classes(plan, dataset, labels, validation.get("small_classes", "warn"))
    return plan


def check_plan_classes(plan: SplitPlan, dataset: Dataset, labels: SlideLabels, policy: str = "warn") -> None:
    """Warn about (``validation.small_classes=warn``) or refuse classes that a trained fold cannot train and score.

    Raises:
        AnnotationError: with ``policy="error"``, a class with too few patients for the folds (naming the
            outcome, the classes with their patient counts, and the folds).
    """
    categorical = [outcome.name for outcome in labels.outcomes if outcome.classes]
    annotations = dataset.annotations[dataset.annotations["slide"].isin(set(labels))]
    check_class_sizes(plan.folds, plan.trained_folds(), annotations, categorical, policy, plan.strategy)


def check_fold_targets(folds: Sequence[Fold], dataset: Dataset, labels: SlideLabels) -> None:
    """Let each outcome check every fold's training and validation targets (e.g. Cox events).

    Raises:
        AnnotationError: a fold that cannot train an outcome (naming the fold).
    """
    for fold in folds:
        for patients, training in ((fold.train_patients, True), (fold.val_patients, False)):
            slides = [s for s in dataset.select_patients(patients).slides() if s in labels]
            check_targets(labels.outcomes, labels.parts(slides), fold.name, training)


def slide_error_policy(cfg: DictConfig) -> str:
    """``on_slide_error`` of ``cfg``: ``stop`` (the default) or ``skip``.

    Raises:
        ConfigError: another value (naming the key and the allowed values).
    """
    value = cfg.get("on_slide_error", "stop")
    policy = str(getattr(value, "value", value))
    if policy not in SLIDE_ERROR_POLICIES:
        raise ConfigError(
            f"on_slide_error={value!r}: choose one of {list(SLIDE_ERROR_POLICIES)} (stop: a slide whose tiles cannot "
            "be made stops the run; skip: it is logged, named in splits.json and left out)"
        )
    return policy


def ensure_tiles(cfg: DictConfig, dataset: Dataset, extract: bool = True) -> Dataset:
    """:func:`prepare_tiles`'s dataset: the slides with tiles, ready to train on."""
    return prepare_tiles(cfg, dataset, extract)[0]


def prepare_tiles(cfg: DictConfig, dataset: Dataset, extract: bool = True) -> tuple[Dataset, dict[str, str]]:
    """Prepare the tile source's data that is missing; returns the dataset of the slides that have tiles.

    The source (``dataset.tile_source``, `src.data.sources`) extracts missing shards (``dataset=shards``,
    ``shards_stream``) or caches missing tile locations (``dataset=wsi``). A shard or cache counts as there
    when it is complete, its slide file unchanged, and it was made at the MPP the slide gets now
    (``project.mpp_column``, the file's own, ``project.mpp_override``); a shard also when the CRC32 of its
    whole tar matches its index (damaged shards are extracted again). With ``extract=False`` (a DDP rank
    other than 0, after rank 0 prepared) nothing is written: every shard or cache (and feature bag) must be
    there already. A slide whose tiles cannot be made (a corrupt or truncated file, no MPP...) stops the run
    with ``on_slide_error=stop`` (the default), or, with ``skip``, is logged and left out: it is returned
    with its reason (``splits.json``'s ``failed_slides``).
    Nothing is read or extracted for clinical-only models (``model.drop_images``). Slides without a tissue
    tile are left out too; patients who lose all their slides are named in the log. With ``dataset.bags``
    (``dataset=features``), the feature bags that are missing are extracted after the shards; the encoder's
    weights file is checked before any tile is read.

    Returns:
        The dataset without the left-out slides, and slide → reason for the slides that failed (``skip``).

    Raises:
        RuntimeError: with ``on_slide_error=stop``, tiles could not be made for some slides (each named with
            its reason); with ``extract=False``, a shard or bag that is missing (naming the slides).
        ConfigError: ``on_slide_error`` is neither ``stop`` nor ``skip``.
        FileNotFoundError: the encoder's weights file is missing (``dataset=features``; saying where to put it).
    """
    if cfg.model.drop_images:
        return dataset, {}
    policy = slide_error_policy(cfg)
    bags = instantiate(cfg.dataset.bags) if cfg.dataset.get("bags") else None  # checks the encoder first
    source = tile_source(cfg.dataset)  # dataset.tile_source: shards (default), shards_stream, wsi
    failed: dict[str, str] = {}
    if extract:
        failed = source.prepare(dataset, workers=int(cfg.dataset.get("extraction_workers", 1)))
        if policy == "stop":
            hint = " (on_slide_error=stop: fix those slide files, or set on_slide_error=skip to go on without them)"
            raise_failures(failed, hint)
        if failed:
            log.warning("Leaving out %d slide(s) whose tiles could not be made (on_slide_error=skip):", len(failed))
            for slide, reason in failed.items():
                log.warning("  %s: %s", slide, reason)
            dataset = without_slides(dataset, failed, "their tiles could not be made")
    else:
        missing = [s for s in dataset.slides() if source.slide_record(dataset, s) is None]
        if missing:
            raise RuntimeError(
                f"{len(missing)} slide(s) without {source.name} tiles that the main process should have prepared: "
                f"{missing[:10]}"
            )
    counts = source.tile_counts(dataset)
    empty = [s for s in dataset.slides() if counts.get(s, 0) == 0]
    if empty:
        log.warning("Skipping %d slide(s) without any tissue tile: %s", len(empty), empty[:10])
        dataset = without_slides(dataset, empty, "no tissue tile")
    if bags is not None and not extract:
        return bags.check(dataset, source), failed
    return (bags.ensure(dataset, source) if bags is not None else dataset), failed


def without_slides(dataset: Dataset, slides: Collection[str], why: str) -> Dataset:
    """``dataset`` without ``slides``; the patients who lose all their slides are named in the log (with ``why``)."""
    if not slides:
        return dataset
    left_out = set(slides)
    patients = set(dataset.patients().values())
    dataset = dataset.filter({"slide": [s for s in dataset.slides() if s not in left_out]})
    lost = sorted(patients - set(dataset.patients().values()))
    if lost:
        log.warning(
            "%d patient(s) lost all their slides (%s) and are left out of every fold: %s", len(lost), why, lost[:20]
        )
    return dataset


def fit_plan_to_tiles(
    plan: SplitPlan,
    dataset: Dataset,
    labels: SlideLabels,
    failed_slides: Mapping[str, str] | None = None,
    small_classes: str = "warn",
) -> SplitPlan:
    """The plan with only the patients that still have slides after :func:`prepare_tiles`, checked again.

    Fold sizes, ``splits.json`` and the run summary then count the patients that are trained and
    validated on; the others are the plan's ``dropped_patients``, and ``failed_slides`` (slide → reason, from
    :func:`prepare_tiles`) its ``failed_slides``.

    When patients were dropped, the classes are checked again as in :func:`plan_folds` (``small_classes`` is
    ``validation.small_classes``).

    Raises:
        AnnotationError: a trained fold left without training or validation patients, or one that can no
            longer train an outcome (e.g. a Cox fold without events), naming the fold; with
            ``small_classes="error"``, a class left with too few patients for the folds.
    """
    fitted = plan.restrict(dataset.patients().values())
    if failed_slides:
        fitted = replace(fitted, failed_slides={**fitted.failed_slides, **failed_slides})
    for before, after in zip(plan.folds, fitted.folds, strict=True):
        if after.name not in set(plan.trained):
            continue
        for part, old, new in (
            ("training", before.train_patients, after.train_patients),
            ("validation", before.val_patients, after.val_patients),
        ):
            if old and not new:
                raise AnnotationError(
                    f"{after.name}: every {part} patient lost all their slides (no tissue tile, or tiles that could "
                    f"not be made): {sorted(old)[:10]}; check the tile filters (tiles.*) or those slides"
                )
    check_fold_targets(fitted.trained_folds(), dataset, labels)
    if len(fitted.dropped_patients) > len(plan.dropped_patients):
        check_plan_classes(fitted, dataset, labels, small_classes)
    return fitted


def dataset_from_config(cfg: DictConfig) -> Dataset:
    """The project's Dataset exactly as ``python train.py`` builds it, ready for ``FoldTrainer.train``.

    Validates the config, generates the demo project when configured, applies ``dataset.filters``, checks
    the annotations and ``cfg.outcomes`` (slides with a blank outcome are left out, or an error with
    ``outcome_blank=error``), and extracts any missing tile shards (none when ``model.drop_images``).

    Example:
        >>> hp = compose(["epochs=[1,3]"])
        >>> dataset = dataset_from_config(hp)
    """
    validate(cfg, sweep_metric=False)  # the Trainer API does not use optimized_metric
    dataset, _ = load_project(cfg)
    return ensure_tiles(cfg, dataset)
