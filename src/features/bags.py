"""Feature bags: one HDF5 file per slide with every tile's features, written on first use like the shards.

Layout of a bag folder, ``{root}/{tile settings key}/{encoder}-{key}/`` (``key`` hashes the tile settings, the
encoder preset and its weights' SHA-256, so a changed encoder, transform or weights file never reuses bags):

* ``bags_config.json`` — what made the bags (tile settings, encoder description, weights SHA-256);
* ``{slide}.h5`` — datasets ``features`` (n_tiles, n_features; float16 by default; ``feats`` is a hard link to
  it, STAMP's name), ``coords`` (n_tiles, 2) int64 tile centres in level-0 px (CLAM/TRIDENT's unit; our shards'
  ``loc_x``/``loc_y``) and ``coords_um`` (n_tiles, 2) float32 in µm; attributes: encoder, weights_sha256,
  transform, pooling, tile_px, tile_um, mpp, patch_size_level0, num_tiles, shard, package versions.

Each bag also stores ``features_sha256`` (:mod:`src.features.integrity`), verified the first time a process
uses the bag; a bag that fails (checksum mismatch, NaN or inf features, unreadable) is extracted again like a
stale one. Non-finite features from the encoder are an error naming the slide: no such bag is written.

A bag is built in memory (HDF5 never writes to the bag folder itself: on a full disk the HDF5 library can crash
the process when it closes a file it could not flush), then written to a temporary name beside its final name
with plain file writes and renamed, so a file with the final name is complete. A write that fails (a full
disk) deletes the temporary file and ends with an error naming the slide and the bag; the complete bags stay,
and a rerun skips every bag whose tile count and shard record match the slide's current shard and whose
contents verify.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from src.data.dataset import Dataset
from src.data.sources import ShardSource, TileSource
from src.data.tiles import TileItems
from src.errors import ConfigError
from src.features.encoders import PRECISIONS, Encoder
from src.features.files import remove_old_leftovers, write_or_explain
from src.features.integrity import (
    CHECKSUM_ATTR,
    DamagedBagError,
    attr_int,
    attr_str,
    bag_damage,
    check_finite_features,
    features_sha256,
    remember_sound,
    verify_bags,
)

log = logging.getLogger(__name__)

BAG_SUFFIX = ".h5"
PACKAGES = ("torch", "timm", "h5py", "numpy")


class FeatureBags:
    """Extracts and finds the feature bags of a dataset for one encoder (``dataset.bags`` in the config).

    Building one checks the encoder preset (its weights file must be there) before any tile is read.

    Args:
        encoder: The encoder preset (the ``encoder`` config group) or an :class:`Encoder`.
        root: Root of the bag folders; ``None`` = ``features/`` next to the project's ``shards_dir``.
        batch_size: Tiles per encoder batch.
        dtype: Stored feature dtype (``float16`` or ``float32``).
        num_workers: DataLoader processes decoding tiles.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.

    Raises:
        ConfigError: no encoder chosen, or an unknown ``dtype``.
        FileNotFoundError: the encoder's weights file is missing (saying where to put it).
    """

    def __init__(
        self,
        encoder: Mapping[str, Any] | Encoder | None,
        root: str | None = None,
        batch_size: int = 64,
        dtype: str = "float16",
        num_workers: int = 0,
        device: str = "auto",
    ) -> None:
        if encoder is None:
            raise ConfigError("dataset=features needs an encoder: add encoder=<preset> (the files in conf/encoder/)")
        self.encoder = encoder if isinstance(encoder, Encoder) else instantiate(encoder)
        self.encoder.check()
        if dtype not in ("float16", "float32"):
            raise ConfigError(f"dataset.bags.dtype={dtype!r}; choose float16 or float32")
        self.root = Path(root) if root else None
        self.batch_size = int(batch_size)
        self.dtype = dtype
        self.num_workers = int(num_workers)
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else "cpu")
        if device not in ("auto", "cpu"):
            self.device = torch.device(device)
        self._sha256: str | None = None

    # ------------------------------------------------------------------ where
    def features_root(self, dataset: Dataset) -> Path:
        """The root of the bag folders for ``dataset``."""
        if self.root is not None:
            return self.root
        if dataset.shards_dir is None:
            raise ConfigError("dataset.bags.root is not set and the dataset has no shards_dir")
        return dataset.shards_dir.parent / "features"

    @property
    def weights_sha256(self) -> str:
        """SHA-256 of the encoder's weights (of its generated tensors when it has no weights file)."""
        if self._sha256 is None:
            cache = self.root / "weights_sha256.json" if self.root else None
            self._sha256 = self.encoder.weights_sha256(cache)
        return self._sha256

    def config(self, dataset: Dataset, source: TileSource | None = None) -> dict[str, Any]:
        """What decides the bags: tile settings, encoder description, weights SHA-256, stored dtype.

        Bags of tiles read live from the slides add ``pixels: slide`` (they differ from the shards' by their JPEG
        error, so they never share a folder).
        """
        assert dataset.tiles is not None, "feature bags are built on a Dataset with tile settings"
        config = {
            "tile_settings": dataset.tiles.to_dict(),
            "encoder": self.encoder.describe(),
            "weights_sha256": self.weights_sha256,
            "dtype": self.dtype,
        }
        if source is not None and getattr(source, "name", "") == "wsi":
            config["pixels"] = "slide"
        return config

    def folder(self, dataset: Dataset, source: TileSource | None = None) -> Path:
        """``{root}/{tile settings key}/{encoder}-{key}``: any change in :meth:`config` gives a new folder."""
        payload = json.dumps(self.config(dataset, source), sort_keys=True, default=str).encode()
        key = hashlib.sha256(payload).hexdigest()[:12]
        assert dataset.tiles is not None  # checked by config()
        return self.features_root(dataset) / dataset.tiles.key / f"{self.encoder.name}-{key}"

    # ------------------------------------------------------------- extraction
    def is_complete(self, folder: Path, slide: str, index: Mapping[str, Any]) -> bool:
        """Whether ``slide``'s bag is there, made from the tiles ``index`` describes and sound (see :meth:`problem`)."""
        return self.problem(folder, slide, index) is None

    def problem(self, folder: Path, slide: str, index: Mapping[str, Any], upgrade: bool = False) -> str | None:
        """Why ``slide``'s bag cannot be used as it is (None: it can), for ``index`` (a source's slide record).

        ``missing``; ``stale`` (made from other tiles: its tile count or shard record differs); or ``damaged: …``
        (:func:`src.features.integrity.bag_damage`: unreadable, checksum mismatch, non-finite features). With
        ``upgrade`` an older bag without checksum is given one.
        """
        path = folder / f"{slide}{BAG_SUFFIX}"
        if not path.is_file():
            return "missing"
        try:
            with h5py.File(path, "r") as bag:
                num_tiles, shard = attr_int(bag.attrs, "num_tiles"), json.loads(attr_str(bag.attrs, "shard"))
        except (OSError, KeyError, ValueError, TypeError, RuntimeError) as err:
            return f"damaged: unreadable ({err})"
        fingerprint = json.loads(json.dumps(index.get("fingerprint"), default=str))
        if num_tiles != int(index["num_tiles"]) or shard != fingerprint:
            return "stale"
        damage = bag_damage(path, upgrade=upgrade)
        return f"damaged: {damage}" if damage else None

    def check(self, dataset: Dataset, source: TileSource | None = None) -> Dataset:
        """What :meth:`ensure` returns, writing nothing: for a DDP rank other than 0, after rank 0 extracted.

        Raises:
            RuntimeError: a slide whose bag is missing, stale or damaged (naming the slides and why).
        """
        source = source or ShardSource()
        folder = self.folder(dataset, source)
        verify_bags([folder / f"{slide}{BAG_SUFFIX}" for slide in dataset.slides()])
        missing = []
        for slide in dataset.slides():
            index = source.slide_record(dataset, slide)
            problem = "no tiles" if index is None else self.problem(folder, slide, index)
            if problem is not None:
                missing.append(f"{slide} ({problem})")
        if missing:
            raise RuntimeError(f"{len(missing)} feature bag(s) missing or unusable in {folder}: {missing[:10]}")
        return dataset

    def ensure(self, dataset: Dataset, source: TileSource | None = None) -> Dataset:
        """Extract the missing bags of ``dataset``'s slides; returns ``dataset``.

        Args:
            dataset: The slides.
            source: Where their tiles are read (``dataset.tile_source``: shards by default, or ``wsi`` for live
                slides); they must be prepared (``source.prepare``).

        Raises:
            FileNotFoundError: a slide whose tiles are not prepared (naming it).
            NonFiniteFeaturesError: the encoder returned NaN or inf features for a slide (naming it).
            OSError: a bag could not be written, e.g. a full disk (naming the slide and the bag; the bags already
                complete stay, and a rerun extracts only the missing ones).
        """
        source = source or ShardSource()
        folder = self.folder(dataset, source)
        folder.mkdir(parents=True, exist_ok=True)
        remove_old_leftovers(folder)
        config_file = folder / "bags_config.json"
        if not config_file.exists():
            text = json.dumps(self.config(dataset, source), indent=2, default=str)
            write_or_explain(config_file, text.encode(), f"the bag folder's {config_file.name}")
        verify_bags([folder / f"{slide}{BAG_SUFFIX}" for slide in dataset.slides()], upgrade=True)
        todo = []
        for slide in dataset.slides():
            index = source.slide_record(dataset, slide)
            if index is None:
                raise FileNotFoundError(f"No prepared tiles ({source.name}) for slide '{slide}'")
            problem = self.problem(folder, slide, index, upgrade=True)
            if problem is not None and problem.startswith("damaged"):
                path = folder / f"{slide}{BAG_SUFFIX}"
                log.warning("Feature bag %s of slide '%s' is %s; extracting it again", path, slide, problem)
            if problem is not None:
                todo.append((slide, index))
        log.info(
            "Feature bags (%s) in %s: %d of %d slide(s) to extract",
            self.encoder.name,
            folder,
            len(todo),
            len(dataset.slides()),
        )
        if not todo:
            return dataset
        model = self.encoder.build().to(self.device)
        transform = self.encoder.transform().to(self.device)
        start, tiles = time.perf_counter(), 0
        for number, (slide, index) in enumerate(todo, 1):
            tiles += self.extract_slide(model, transform, dataset, folder, slide, index, source)
            elapsed = time.perf_counter() - start
            log.info("Bag %d/%d: %s (%d tiles so far, %.0f tiles/s)", number, len(todo), slide, tiles, tiles / elapsed)
        return dataset

    @torch.inference_mode()
    def encode(self, model: torch.nn.Module, transform: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
        """Features of a uint8 (batch, 3, H, W) tile batch (autocast at the preset's precision on a GPU)."""
        images = images.to(self.device, non_blocking=True)
        dtype = PRECISIONS[self.encoder.precision]
        use_autocast = self.device.type == "cuda" and dtype != torch.float32
        with torch.autocast(self.device.type, dtype=dtype, enabled=use_autocast):
            return model(transform(images)).float()

    def extract_slide(
        self,
        model: torch.nn.Module,
        transform: torch.nn.Module,
        dataset: Dataset,
        folder: Path,
        slide: str,
        index: Mapping[str, Any],
        source: TileSource | None = None,
    ) -> int:
        """Encode every tile of ``slide`` and write its bag (temporary name, then renamed); returns tiles."""
        tiles = (source or ShardSource()).tiles(dataset, [slide], np.zeros((1, 0), np.float32), None)
        loader = DataLoader(
            _Images(tiles.data),
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
        )
        parts = [self.encode(model, transform, batch).cpu() for batch in loader]
        features = torch.cat(parts) if parts else torch.zeros(0, self.encoder.num_features)
        if features.shape[1] != self.encoder.num_features:
            raise ValueError(
                f"encoder={self.encoder.name} returned {features.shape[1]} features per tile, but its preset says "
                f"num_features={self.encoder.num_features}; fix encoder.num_features (or its pooling)"
            )
        with np.errstate(over="ignore"):  # values beyond float16 become inf: refused just below, by name
            stored = features.numpy().astype(self.dtype)
        check_finite_features(features.numpy(), stored, slide, self.encoder.name, self.precision, self.dtype)
        coords = np.asarray(tiles.locs, np.int64)
        mpp = float(index.get("mpp") or 0.0)
        image = io.BytesIO()  # HDF5 writes only to memory; the file is written below with plain writes
        with h5py.File(image, "w") as bag:
            bag.create_dataset("features", data=stored)
            bag["feats"] = bag["features"]  # STAMP's name for the same data (a hard link, no copy)
            bag.create_dataset("coords", data=coords)
            bag.create_dataset("coords_um", data=(coords * mpp).astype(np.float32))
            self._write_attrs(bag, dataset, slide, index, mpp)
            bag.attrs[CHECKSUM_ATTR] = features_sha256(stored)
        path = folder / f"{slide}{BAG_SUFFIX}"
        with image.getbuffer() as data:
            write_or_explain(path, data, f"the feature bag of slide '{slide}'")
        remember_sound(path)
        return len(features)

    @property
    def precision(self) -> str:
        """The precision the encoder runs at: the preset's on a GPU, fp32 on the CPU (no autocast there)."""
        return self.encoder.precision if self.device.type == "cuda" else "fp32"

    def _write_attrs(self, bag: h5py.File, dataset: Dataset, slide: str, index: Mapping[str, Any], mpp: float) -> None:
        encoder = self.encoder.describe()
        assert dataset.tiles is not None  # checked by config()
        attrs = {
            "slide": slide,
            "encoder": self.encoder.name,
            "encoder_config": json.dumps(encoder["model"], default=str),
            "weights_sha256": self.weights_sha256,
            "weights_file": str(self.encoder.weights_path or ""),
            "transform": json.dumps(encoder["transform"]),
            "pooling": str(encoder["model"].get("pooling", "")),
            "precision": self.precision,
            "device": self.device.type,
            "tile_px": int(dataset.tiles.tile_px),
            "tile_um": str(dataset.tiles.tile_um),
            "tile_settings": json.dumps(dataset.tiles.to_dict()),
            "mpp": mpp,
            "patch_size_level0": int(index.get("extent_px") or 0),
            "coords_unit": "level-0 px (tile centres); coords_um: microns",
            "feat_type": "tile",
            "num_tiles": int(index["num_tiles"]),
            "shard": json.dumps(index.get("fingerprint"), default=str),  # what the tiles were read from
            "versions": json.dumps({name: _version(name) for name in PACKAGES}),
        }
        for key, value in attrs.items():
            bag.attrs[key] = value


class _Images(torch.utils.data.Dataset):
    """The decoded uint8 tiles of a source's items, without targets."""

    def __init__(self, tiles: TileItems) -> None:
        self.tiles = tiles

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, tile: int) -> torch.Tensor:
        return self.tiles.read_image(tile)


def read_bag(path: str | Path) -> dict[str, Any]:
    """A bag file's ``features`` (float32), ``coords``, ``coords_um`` and attributes, as NumPy arrays and a dict.

    Raises:
        DamagedBagError: its features do not match their stored ``features_sha256``, or hold NaN or inf.
    """
    damage = bag_damage(path)
    if damage is not None:
        raise DamagedBagError(f"Feature bag {path} is damaged ({damage}); extract it again (delete it and rerun)")
    with h5py.File(path, "r") as bag:
        return {
            "features": bag["features"][()].astype(np.float32),
            "coords": bag["coords"][()],
            "coords_um": bag["coords_um"][()],
            "attrs": dict(bag.attrs),
        }


def bags_from_config(bags: DictConfig | Mapping[str, Any]) -> FeatureBags:
    """Instantiate ``dataset.bags`` (its encoder node stays a config until it is needed)."""
    return instantiate(bags)


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return ""
