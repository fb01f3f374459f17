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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import Dataset as TorchDataset

from src.data.base_datamodule import BaseFoldDataModule
from src.data.dataset import Dataset, SlideLabels
from src.data.sources import tile_source
from src.errors import ConfigError
from src.features.bags import BAG_SUFFIX
from src.features.integrity import DamagedBagError, bag_damage, verify_bags

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

    @property
    def sample_patients(self) -> list[str]:
        """The patients of the samples: bags (see :class:`~src.data.base_datamodule.FoldSide`)."""
        return self.bag_patients

    @property
    def item_samples(self) -> np.ndarray:
        """The sample of each item: an item is a bag."""
        return np.arange(len(self.names))


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


class BagDataModule(BaseFoldDataModule[BagSet, BagIndex]):
    """Training and validation bags of one fold (``dataset=features``; same signature as ``FoldDataModule``).

    The setup, samplers and loaders are :class:`~src.data.base_datamodule.BaseFoldDataModule`'s, over bags.

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
        super().__init__(hp, labels, train_ds, val_ds, where)
        self.level = str(hp.dataset.get("aggregation_level", "slide"))
        if self.level not in AGGREGATION_LEVELS:
            raise ConfigError(f"dataset.aggregation_level={self.level!r}; choose one of {list(AGGREGATION_LEVELS)}")
        self.normalizer = None  # features are extracted once; stain normalization is not applied to them
        self.folder: Path | None = None
        self.n_features = 0

    def net_kwargs(self) -> dict[str, int]:
        """What the MIL model needs besides the heads: the bags' feature width."""
        return {"n_features": self.n_features}

    def bags_config(self) -> dict:
        """What made the bags (``bags_config.json``: tile settings, encoder, weights SHA-256, dtype), for params."""
        config = self.folder / "bags_config.json" if self.folder is not None else None
        return json.loads(config.read_text()) if config is not None and config.is_file() else {}

    def _side(self, dataset: Dataset, train: bool) -> BagSet:
        """The bags of ``dataset`` (the bag folder is found from the training slides, built first).

        Training bags draw ``dataset.bag_size`` tiles; validation bags are whole (or ``dataset.max_val_bag_size``).
        """
        if train:
            self.folder = instantiate(self.hp.dataset.bags).folder(dataset, tile_source(self.hp.dataset))
        bag_size = self.hp.dataset.get("bag_size" if train else "max_val_bag_size")
        bag_size = int(bag_size) if bag_size else None
        folder = self.folder
        assert folder is not None, "the training side, built first, finds the bag folder"
        slides, patients, clinical, targets = self._labelled(dataset)
        files = [folder / f"{s}{BAG_SUFFIX}" for s in slides]
        missing = [f for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} feature bag(s) missing in {folder}, e.g. {missing[0].name}; they are extracted "
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

    def _validation_index(self, val: BagSet, weights: np.ndarray | None) -> BagIndex:
        return BagIndex(self.level, val.names, val.bag_patients, val.target_parts, val.n_tiles, weights)

    def _eval_batch_size(self) -> int:
        """``dataset.eval_bags`` validation bags per batch."""
        return int(self.hp.dataset.get("eval_bags", 1))

    def _collate(self, batch_size: int | None) -> Callable[[list[dict]], dict[str, torch.Tensor]]:
        return pad_bags


def _num_tiles(path: Path) -> int:
    with h5py.File(path, "r") as handle:
        return int(handle["features"].shape[0])
