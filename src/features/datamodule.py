"""The data of one fold for multiple-instance learning: bags of tile features, padded and masked per batch.

A bag is one slide (``dataset.aggregation_level=slide``) or all the slides of a patient (``patient``); it is the
sample: targets, the training sampler (``training_balance`` over bags), Cox risk sets and prediction tables
compare bags. Training bags draw ``dataset.bag_size`` random tiles each epoch (all of them when fewer);
validation bags are whole (or clipped to ``dataset.max_val_bag_size``). The clinical encoder is fitted on the
fold's training slides, as for tile models.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from src.data.clinical import ClinicalEncoder, fold_clinical
from src.data.dataset import Dataset, SlideLabels
from src.data.sources import tile_source
from src.errors import ConfigError
from src.features.bags import BAG_SUFFIX
from src.features.integrity import DamagedBagError, bag_damage, verify_bags
from src.outcomes import check_targets
from src.samplers.shards import training_sampler, validation_sampler

log = logging.getLogger(__name__)

AGGREGATION_LEVELS = ("slide", "patient")


@dataclass
class BagSet:
    """One side of a fold (training or validation) as bags.

    Attributes:
        dataset: The slides' Dataset (after dropping blank clinical inputs).
        slides: The labelled slides (for the slide manifest).
        patients: Patient of each slide in ``slides``.
        names: Bag names (slide names, or patients for patient bags); ``bag`` in a batch indexes this list.
        bag_patients: Patient of each bag.
        target_parts: Per outcome, the bags' (n_bags, n_targets) targets.
        data: The :class:`BagDataset`.
        n_tiles: (n_bags,) tiles in each bag.
    """

    dataset: Dataset
    slides: list[str]
    patients: list[str]
    names: list[str]
    bag_patients: list[str]
    target_parts: list[np.ndarray]
    data: BagDataset
    n_tiles: np.ndarray


@dataclass
class BagIndex:
    """What turns the validation outputs (one row per bag) into prediction tables.

    Attributes:
        level: ``slide`` or ``patient``: what a bag is, hence the level of the table's rows.
        names: Bag names.
        patients: Patient of each bag.
        target_parts: Per outcome, the bags' targets.
        n_tiles: (n_bags,) tiles in each bag.
        tile_weights: (n_bags,) ``validation_balance`` weights of ``val/loss`` (None: unweighted).
    """

    level: str
    names: list[str]
    patients: list[str]
    target_parts: list[np.ndarray]
    n_tiles: np.ndarray
    tile_weights: np.ndarray | None

    def rows(self, bags: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], np.ndarray]:
        """Name, patient, target parts and tile count of the validation bags ``bags``."""
        return (
            np.asarray(self.names)[bags],
            np.asarray(self.patients)[bags],
            [part[bags] for part in self.target_parts],
            self.n_tiles[bags],
        )


class BagDataset(TorchDataset):
    """Bags of tile features read from HDF5 bag files (one or several files per bag).

    Each item: ``features`` float32 (n, n_features), ``target``, ``clinical``, ``bag`` (its index).

    Args:
        files: Per bag, its bag files (one per slide).
        targets: (n_bags, n_targets) targets.
        clinical: (n_bags, n_clinical) encoded clinical inputs.
        bag_size: Tiles drawn at random per item (None: every tile).
    """

    def __init__(
        self, files: list[list[Path]], targets: np.ndarray, clinical: np.ndarray, bag_size: int | None = None
    ) -> None:
        self.files = files
        self.targets = torch.as_tensor(targets, dtype=torch.float32)
        self.clinical = torch.as_tensor(clinical, dtype=torch.float32)
        self.bag_size = bag_size

    def __len__(self) -> int:
        return len(self.files)

    def read(self, bag: int) -> torch.Tensor:
        """Every tile's features of bag ``bag``, (n_tiles, n_features) in the stored dtype."""
        parts = []
        for path in self.files[bag]:
            with h5py.File(path, "r") as handle:
                parts.append(torch.from_numpy(handle["features"][()]))
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    def __getitem__(self, bag: int) -> dict[str, torch.Tensor | int]:
        features = self.read(bag)
        if self.bag_size is not None and len(features) > self.bag_size:
            features = features[torch.randperm(len(features))[: self.bag_size]]
        return {"features": features.float(), "target": self.targets[bag], "clinical": self.clinical[bag], "bag": bag}


def pad_bags(items: list[dict]) -> dict[str, torch.Tensor]:
    """Collate bags of different sizes: zero-padded ``features`` (batch, max_tiles, n_features) and a ``mask``."""
    longest = max(len(item["features"]) for item in items)
    width = items[0]["features"].shape[1]
    features = torch.zeros(len(items), longest, width)
    mask = torch.zeros(len(items), longest, dtype=torch.bool)
    for i, item in enumerate(items):
        n = len(item["features"])
        features[i, :n] = item["features"]
        mask[i, :n] = True
    return {
        "features": features,
        "mask": mask,
        "target": torch.stack([item["target"] for item in items]),
        "clinical": torch.stack([item["clinical"] for item in items]),
        "bag": torch.as_tensor([item["bag"] for item in items]),
    }


class BagDataModule(pl.LightningDataModule):
    """Training and validation bags of one fold (``dataset=features``; same signature as ``FoldDataModule``).

    Args:
        hp: The composed config (``hp.dataset``: ``bags``, ``bag_size``, ``max_val_bag_size``,
            ``aggregation_level``, ``eval_bags``).
        labels: Slide labels (with the outcomes).
        train_ds: The fold's training slides (bags must exist: ``src.project.ensure_tiles`` makes them).
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
        self.level = str(hp.dataset.get("aggregation_level", "slide"))
        if self.level not in AGGREGATION_LEVELS:
            raise ConfigError(f"dataset.aggregation_level={self.level!r}; choose one of {list(AGGREGATION_LEVELS)}")
        self.encoder = ClinicalEncoder([])
        self.normalizer = None  # features are extracted once; stain normalization is not applied to them
        self.train: BagSet | None = None
        self.val: BagSet | None = None
        self.val_index: BagIndex | None = None
        self.folder: Path | None = None
        self.n_features = 0

    def net_kwargs(self) -> dict[str, int]:
        """What the MIL model needs besides the heads: the bags' feature width."""
        return {"n_features": self.n_features}

    def bags_config(self) -> dict:
        """What made the bags (``bags_config.json``: tile settings, encoder, weights SHA-256, dtype), for params."""
        config = self.folder / "bags_config.json" if self.folder is not None else None
        return json.loads(config.read_text()) if config is not None and config.is_file() else {}

    def setup(self, stage: str | None = None) -> None:
        """Fit the clinical encoder and build the bag sets and the validation index (once)."""
        if self.train is not None:
            return
        columns = list(self.hp.input_header or [])
        train_ds, val_ds, self.encoder = fold_clinical(*self._datasets, columns, self.hp.clinical_blank, self.where)
        self.folder = instantiate(self.hp.dataset.bags).folder(train_ds, tile_source(self.hp.dataset))
        bag_size = self.hp.dataset.get("bag_size")
        self.train = self._bag_set(train_ds, int(bag_size) if bag_size else None)
        if not self.train.names:
            raise ValueError(f"No training slides with labels in {self.where}")
        check_targets(self.outcomes, self.train.target_parts, self.where, training=True)
        max_val = self.hp.dataset.get("max_val_bag_size")
        self.val = self._bag_set(val_ds, int(max_val) if max_val else None) if val_ds is not None else None
        if self.val is not None and not self.val.names:
            self.val = None
        if self.val is not None:
            check_targets(self.outcomes, self.val.target_parts, self.where, training=False)
            weights = self.outcomes[0].tile_weights(
                self.hp.validation_balance,
                np.arange(len(self.val.names)),
                self.val.bag_patients,
                self.val.target_parts[0],
                "validation_balance",
            )
            self.val_index = BagIndex(
                self.level, self.val.names, self.val.bag_patients, self.val.target_parts, self.val.n_tiles, weights
            )

    def _bag_set(self, dataset: Dataset, bag_size: int | None) -> BagSet:
        slides = [s for s in dataset.slides() if s in self.labels]
        patients = dataset.patients()
        table = dataset.annotations.set_index("slide").loc[slides].reset_index()
        clinical = self.encoder.transform(table)
        targets = self.labels.targets(slides)
        files = [self.folder / f"{s}{BAG_SUFFIX}" for s in slides]
        missing = [f for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} feature bag(s) missing in {self.folder}, e.g. {missing[0].name}; they are extracted "
                "by train.py / src.project.ensure_tiles (dataset=features)"
            )
        verify_bags(files)  # once per bag and process (a memo hit after ensure_tiles in this process)
        for slide, path in zip(slides, files, strict=True):
            damage = bag_damage(path)
            if damage is not None:
                raise DamagedBagError(
                    f"Feature bag {path} of slide '{slide}' is damaged ({damage}). Run train.py again: damaged bags "
                    "are extracted again before training (src.project.ensure_tiles)"
                )
        counts = np.asarray([_num_tiles(f) for f in files], np.int64)
        if self.level == "slide":
            groups = [[i] for i in range(len(slides))]
            names = list(slides)
        else:  # one bag per patient: every tile of the patient's slides; label and clinical of its first slide
            names = list(dict.fromkeys(patients[s] for s in slides))
            position = {p: i for i, p in enumerate(names)}
            groups = [[] for _ in names]
            for i, s in enumerate(slides):
                groups[position[patients[s]]].append(i)
        first = [group[0] for group in groups]
        data = BagDataset([[files[i] for i in g] for g in groups], targets[first], clinical[first], bag_size)
        if self.n_features == 0 and files:
            with h5py.File(files[0], "r") as handle:
                self.n_features = int(handle["features"].shape[1])
        return BagSet(
            dataset,
            slides,
            [patients[s] for s in slides],
            names,
            [patients[slides[i]] for i in first],
            self.labels.layout.split(targets[first]),
            data,
            np.asarray([counts[g].sum() for g in groups], np.int64),
        )

    def train_dataloader(self) -> DataLoader:
        """Training batches of bags, drawn by the first outcome's sampler (``training_balance`` over bags)."""
        hp = self.hp
        sampler = self.outcomes[0].sampler(
            hp.training_balance,
            np.arange(len(self.train.names)),
            self.train.bag_patients,
            self.train.target_parts[0],
            int(hp.batch_size),
            int(hp.seed),
            hp.loss,
        )
        sampler, shuffle = training_sampler(sampler, len(self.train.data), int(hp.seed))  # per rank under DDP
        return self._loader(self.train.data, int(hp.batch_size), sampler=sampler, shuffle=shuffle)

    def val_dataloader(self) -> DataLoader | list:
        """Every validation bag once, in order, ``dataset.eval_bags`` per batch."""
        if self.val is None:
            return []
        sampler = validation_sampler(len(self.val.data))  # under DDP: this rank's share, no padding
        return self._loader(self.val.data, int(self.hp.dataset.get("eval_bags", 1)), sampler=sampler, shuffle=False)

    def _loader(self, data: TorchDataset, batch_size: int, sampler, shuffle: bool) -> DataLoader:
        workers = int(self.hp.dataloader.num_workers)
        train = data is self.train.data
        return DataLoader(
            data,
            batch_size=batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=workers,
            persistent_workers=workers > 0,
            collate_fn=pad_bags,
            drop_last=train and len(data) > int(self.hp.batch_size),
        )


def _num_tiles(path: Path) -> int:
    with h5py.File(path, "r") as handle:
        return int(handle["features"].shape[0])
