"""What the tile and bag data modules of a fold share: clinical fit, the fold's two sides, samplers and loaders.

A fold's data module turns the training and validation slides into one *side* each (:class:`FoldSide`): the
samples a target belongs to (slides, or bags of tiles), their patients and targets, and a torch dataset of
items (tiles, bags) that each belong to one sample. :class:`BaseFoldDataModule` fits the clinical encoder on
the training slides, checks the targets of both sides, weighs the validation samples (``validation_balance``),
draws training items with the first outcome's sampler (``training_balance``) and reads every validation item
once, in order. A subclass says how a side is built (:meth:`~BaseFoldDataModule._side`), what indexes its
validation outputs and how items are batched.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sized
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import pytorch_lightning as pl
from omegaconf import DictConfig
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from src.data.clinical import ClinicalEncoder, fold_clinical
from src.data.dataset import Dataset, SlideLabels
from src.outcomes import check_targets
from src.samplers.shards import training_sampler, validation_sampler


class FoldSide(Protocol):
    """One side of a fold (training or validation) as the loaders see it (read-only)."""

    @property
    def target_parts(self) -> list[np.ndarray]:
        """Per outcome, the samples' (n_samples, n_targets) targets."""

    @property
    def data(self) -> TorchDataset:
        """The torch dataset: one item per tile (tile models) or per bag (MIL)."""

    @property
    def sample_patients(self) -> list[str]:
        """Patient of each sample (slide or bag); empty when the side has no labelled slide."""

    @property
    def item_samples(self) -> np.ndarray:
        """(n_items,) sample of each item of ``data``."""


Side = TypeVar("Side", bound=FoldSide)
Index = TypeVar("Index")


class BaseFoldDataModule(pl.LightningDataModule, ABC, Generic[Side, Index]):
    """Training and validation data of one fold: what tile and bag modules share.

    A subclass names its side and validation index types (``BaseFoldDataModule[SlideSet, ValidationIndex]``).

    Args:
        hp: The composed config.
        labels: Slide labels (with the outcomes) from ``Dataset.labels``.
        train_ds: The fold's training slides.
        val_ds: Its validation slides (None: no validation).
        where: Name of the fold, used in messages.
    """

    def __init__(
        self, hp: DictConfig, labels: SlideLabels, train_ds: Dataset, val_ds: Dataset | None = None, where: str = ""
    ) -> None:
        super().__init__()
        self.hp = hp
        self.labels = labels
        self.outcomes = labels.outcomes
        self.where = where or "model"
        self._datasets = (train_ds, val_ds)
        self.encoder = ClinicalEncoder([])
        self.normalizer: Any = None
        self.train: Side | None = None
        self.val: Side | None = None  # None: no validation slides with labels
        self.val_index: Index | None = None  # what turns the validation outputs into prediction tables

    @abstractmethod
    def _side(self, dataset: Dataset, train: bool) -> Side:
        """Build the training (``train``) or validation side of ``dataset``; the training side is built first."""

    @abstractmethod
    def _validation_index(self, val: Side, weights: np.ndarray | None) -> Index:
        """What turns the outputs of the validation side ``val`` into tables; ``weights``: per item, or None."""

    @abstractmethod
    def _collate(self, batch_size: int | None) -> Callable[[list], Any] | None:
        """How a loader of ``batch_size`` items per batch (None: the dataset batches itself) collates them."""

    @property
    def pins_memory(self) -> bool:
        """Whether the loaders pin their batches' memory."""
        return False

    def setup(self, stage: str | None = None) -> None:
        """Fit the clinical encoder, build both sides and the validation index (once)."""
        if self.train is not None:
            return
        columns = list(self.hp.input_header or [])
        train_ds, val_ds, self.encoder = fold_clinical(*self._datasets, columns, self.hp.clinical_blank, self.where)
        self.train = self._side(train_ds, train=True)
        if not self.train.sample_patients:
            raise ValueError(f"No training slides with labels in {self.where}")
        check_targets(self.outcomes, self.train.target_parts, self.where, training=True)
        self.val = self._side(val_ds, train=False) if val_ds is not None else None
        if self.val is not None and not self.val.sample_patients:
            self.val = None
        if self.val is not None:
            check_targets(self.outcomes, self.val.target_parts, self.where, training=False)
            weights = self.outcomes[0].tile_weights(
                self.hp.validation_balance,
                self.val.item_samples,
                self.val.sample_patients,
                self.val.target_parts[0],
                "validation_balance",
            )
            self.val_index = self._validation_index(self.val, weights)

    def _labelled(self, dataset: Dataset) -> tuple[list[str], dict[str, str], np.ndarray, np.ndarray]:
        """The labelled slides of ``dataset`` (in its order), slide → patient, their clinical inputs and targets."""
        slides = [s for s in dataset.slides() if s in self.labels]
        patients = dataset.patients()
        table = dataset.annotations.set_index("slide").loc[slides].reset_index()
        return slides, patients, self.encoder.transform(table), self.labels.targets(slides)

    def train_dataloader(self) -> DataLoader:
        """Training batches, drawn by the first outcome's sampler (``training_balance``)."""
        hp = self.hp
        train = self.train
        assert train is not None, "setup() builds the training side before the loaders"
        sampler = self.outcomes[0].sampler(
            hp.training_balance,
            train.item_samples,
            train.sample_patients,
            train.target_parts[0],
            int(hp.batch_size),
            int(hp.seed),
            hp.loss,
        )
        sampler, shuffle = training_sampler(sampler, _length(train.data), int(hp.seed))  # per rank under DDP
        return self._loader(train.data, int(hp.batch_size), sampler=sampler, shuffle=shuffle)

    @abstractmethod
    def _eval_batch_size(self) -> int:
        """Validation items per batch."""

    def val_dataloader(self) -> DataLoader | list:
        """Every validation item once, in order."""
        if self.val is None:
            return []
        sampler = validation_sampler(_length(self.val.data))  # under DDP: this rank's share, no padding
        return self._loader(self.val.data, self._eval_batch_size(), sampler=sampler, shuffle=False)

    def _loader(self, data: TorchDataset, batch_size: int | None, sampler: Any, shuffle: bool) -> DataLoader:
        workers = int(self.hp.dataloader.num_workers)
        assert self.train is not None, "setup() builds the training side before the loaders"
        train = data is self.train.data and batch_size is not None
        return DataLoader(
            data,
            batch_size=batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=workers,
            collate_fn=self._collate(batch_size),
            persistent_workers=workers > 0,
            pin_memory=self.pins_memory,
            drop_last=train and _length(data) > int(self.hp.batch_size),
        )


def _length(data: TorchDataset) -> int:
    """Items in ``data``: a side's data is map-style (tiles, bags), so it has a length (torch's Dataset has none)."""
    assert isinstance(data, Sized), f"{type(data).__name__} is not a map-style dataset with a length"
    return len(data)
