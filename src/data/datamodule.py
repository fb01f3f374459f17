"""The data of one fold as a LightningDataModule: tile datasets, normalizer fit, samplers, loaders.

The tiles come from the source ``dataset.tile_source`` names (`src.data.sources`: shards, streamed shards or
the slides themselves); whichever it is, the items, the transform hook, the samplers and the validation index
are the same.

Everything fitted here is fitted on the fold's training slides only: the clinical encoder, the stain
normalizer (``normalizer.source=dataset``) and the sampler. Validation tiles are normalized but never
augmented, and are read exactly once per evaluation. Workers return uint8 tiles; the normalizer and most
augmentations run on the batch on the training device (``normalizer``, ``augment``; see ``src.data.transforms``).

The training device (``trainer.accelerator``: :attr:`FoldDataModule.trains_on_cuda`) decides where
``augment.jpeg_on=auto`` recompresses (on the batch for CUDA, in the workers otherwise), whether the loaders pin
memory (CUDA only), and the batches' memory layout (``src.data.collate``: as decoded, channels-last, for CUDA).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from src.data.augment import Augment
from src.data.base_datamodule import BaseFoldDataModule
from src.data.collate import TileCollate
from src.data.dataset import Dataset, SlideLabels
from src.data.device import trains_on_cuda
from src.data.normalizers import StainNormalizer
from src.data.sources import SourceTiles, TileSource, tile_source
from src.data.tiles import SlideFeatureDataset
from src.data.transforms import tile_transform

log = logging.getLogger(__name__)


@dataclass
class SlideSet:
    """The slides of one side of a fold (training or validation) as the loaders see them.

    Attributes:
        dataset: The slides' Dataset (after dropping blank clinical inputs).
        slides: Slide names with labels, in dataset order; a tile's ``slide`` indexes this list.
        patients: Patient of each slide.
        target_parts: Per outcome, the slides' (n_slides, n_targets) targets.
        data: The torch dataset (tiles, or one item per slide for clinical-only models).
        slide_idx: (n_items,) slide of each item.
        locs: (n_items, 2) tile centre in level-0 pixels (zeros for clinical-only items).
    """

    dataset: Dataset
    slides: list[str]
    patients: list[str]
    target_parts: list[np.ndarray]
    data: TorchDataset
    slide_idx: np.ndarray
    locs: np.ndarray

    @property
    def sample_patients(self) -> list[str]:
        """The patients of the samples: slides (see :class:`~src.data.base_datamodule.FoldSide`)."""
        return self.patients

    @property
    def item_samples(self) -> np.ndarray:
        """The sample (slide) of each item."""
        return self.slide_idx


@dataclass
class ValidationIndex:
    """What turns the validation outputs into prediction tables (replaces an untyped context dict).

    Attributes:
        slides: The validation slides; ``slide_idx`` indexes this list.
        patients: Patient of each slide.
        target_parts: Per outcome, the slides' targets.
        slide_idx: (n_tiles,) slide of each validation tile.
        locs: (n_tiles, 2) tile centres.
        tile_weights: (n_tiles,) ``validation_balance`` weights of ``val/loss`` (None: unweighted).
    """

    slides: list[str]
    patients: list[str]
    target_parts: list[np.ndarray]
    slide_idx: np.ndarray
    locs: np.ndarray
    tile_weights: np.ndarray | None

    def rows(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], np.ndarray]:
        """Slide, patient, target parts and location of the validation tiles ``tiles``."""
        slide_idx = self.slide_idx[tiles]
        return (
            np.asarray(self.slides)[slide_idx],
            np.asarray(self.patients)[slide_idx],
            [part[slide_idx] for part in self.target_parts],
            self.locs[tiles],
        )


class FoldDataModule(BaseFoldDataModule[SlideSet, ValidationIndex]):
    """Training and validation tiles of one fold (the setup, samplers and loaders: :class:`BaseFoldDataModule`).

    Its arguments are :class:`BaseFoldDataModule`'s; the tiles come from ``hp.dataset.tile_source``.
    """

    def __init__(
        self, hp: DictConfig, labels: SlideLabels, train_ds: Dataset, val_ds: Dataset | None = None, where: str = ""
    ) -> None:
        super().__init__(hp, labels, train_ds, val_ds, where)
        self.normalizer: StainNormalizer | None = None
        # the training augmentations; with the normalizer, run on the device by the module
        self.augment: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.source: TileSource = tile_source(hp.get("dataset"))  # dataset.tile_source: shards, wsi, ...
        self._train_tiles: SourceTiles | None = None

    def _side(self, dataset: Dataset, train: bool) -> SlideSet:
        slides, patients, clinical, targets = self._labelled(dataset)
        data: TorchDataset
        if self.hp.model.drop_images:
            n = len(slides)
            data = SlideFeatureDataset(slides, targets, clinical)
            slide_idx, locs = np.arange(n), np.zeros((n, 2), np.int64)
        else:
            tiles = self.source.tiles(dataset, slides, targets, clinical)
            items = data = tiles.data
            if train and self.hp.get("normalizer"):  # fitted on training tiles (or a reference tile) only
                normalizer = instantiate(self.hp.normalizer)
                self.normalizer = normalizer.fit_source(items.read_image, len(items), int(self.hp.seed))
                log.info("Stain normalizer fitted: %s", self.normalizer.get_fit())
            augment = self._augment() if train else None
            self.augment = augment if train else self.augment
            items.transform = tile_transform(augment, self.normalizer, train)  # the worker-side part (j, or None)
            slide_idx, locs = tiles.slide_idx, tiles.locs
            if train:
                self._train_tiles = tiles
        return SlideSet(
            dataset, slides, [patients[s] for s in slides], self.labels.layout.split(targets), data, slide_idx, locs
        )

    def _validation_index(self, val: SlideSet, weights: np.ndarray | None) -> ValidationIndex:
        return ValidationIndex(val.slides, val.patients, val.target_parts, val.slide_idx, val.locs, weights)

    @property
    def accelerator(self) -> object:
        """``trainer.accelerator`` of the fit (``None`` when the config has no trainer group)."""
        return (self.hp.get("trainer") or {}).get("accelerator")

    @property
    def trains_on_cuda(self) -> bool:
        """Whether the fit trains on CUDA (``trainer.accelerator``; :func:`~src.data.device.trains_on_cuda`).

        It decides where ``augment.jpeg_on=auto`` recompresses, pinned memory, and the batches' memory
        layout (channels-last for CUDA: see ``src.data.collate``).
        """
        return trains_on_cuda(self.accelerator)

    def _augment(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The training augmentations, ``augment.jpeg_on=auto`` resolved for ``trainer.accelerator``.

        ``auto`` puts ``j`` on the device only when training on CUDA (:func:`~src.data.augment.jpeg_on_device`);
        the same object goes to the workers (``tile_transform``) and to the device side (``self.augment``), so
        ``j`` runs in exactly one of them.
        """
        if not self.hp.get("augment"):
            return None
        augment = instantiate(self.hp.augment)
        if isinstance(augment, Augment):
            augment = augment.placed(self.accelerator)  # auto: trains_on_cuda
        return augment

    def train_dataloader(self) -> DataLoader:
        """Training batches, drawn by the first outcome's sampler (``training_balance``), or the source's stream."""
        stream = self._training_stream()
        if stream is not None:  # a streaming source draws (and batches) in its loader processes
            return self._loader(stream, None, sampler=None, shuffle=False)
        return super().train_dataloader()

    def _training_stream(self) -> TorchDataset | None:
        """The source's training stream (None: sample ``train.data``), slides weighted by ``training_balance``."""
        train = self.train
        if self._train_tiles is None:
            return None
        assert train is not None, "the training side is built with its tiles"
        weights = self.outcomes[0].tile_weights(
            self.hp.training_balance, train.slide_idx, train.patients, train.target_parts[0], "training_balance"
        )
        slide_weights = None if weights is None else np.bincount(train.slide_idx, weights, len(train.slides))
        return self.source.training_stream(self._train_tiles, slide_weights, int(self.hp.batch_size), int(self.hp.seed))

    def _eval_batch_size(self) -> int:
        return int(self.hp.dataloader.eval_batch_size)

    def _collate(self, batch_size: int | None) -> TileCollate | None:
        return TileCollate(channels_last=self.trains_on_cuda) if batch_size is not None else None

    @property
    def pins_memory(self) -> bool:
        """Pinned batches only for a CUDA fit: a CPU fit on a GPU machine needs none."""
        return self.trains_on_cuda
