"""Random-access tile datasets over per-slide WebDataset shards.

Shards are plain tar files (``{slide}.tar``; see ``src.extraction.shards``). Instead of streaming them,
we read each tar's member offsets once and then fetch any tile with a single ``pread``. That gives exact
balanced sampling (any weight per tile), exactly-once evaluation passes over validation tiles, and
standard ``DistributedSampler`` sharding under DDP, all with a plain map-style ``Dataset``.
"""

from __future__ import annotations

import os
import tarfile
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset
from torchvision.io import ImageReadMode, decode_image

from src.extraction.shard_crc import forget_verified
from src.extraction.shards import read_index, shard_damage


@dataclass
class TileIndex:
    """Where every tile of a set of slides lives.

    Attributes:
        slides: Slide names; ``slide_idx`` indexes into this list.
        paths: Tar path of each slide.
        slide_idx: (n_tiles,) slide of each tile.
        offset: (n_tiles,) byte offset of each tile's image in its tar.
        size: (n_tiles,) byte length of each tile's image.
        loc: (n_tiles, 2) tile centre in level-0 pixels.
    """

    slides: list[str]
    paths: list[Path]
    slide_idx: np.ndarray
    offset: np.ndarray
    size: np.ndarray
    loc: np.ndarray

    def __len__(self) -> int:
        return len(self.slide_idx)

    @property
    def tiles_per_slide(self) -> np.ndarray:
        """(n_slides,) number of tiles of each slide."""
        return np.bincount(self.slide_idx, minlength=len(self.slides))

    @classmethod
    def from_shards(cls, shard_dir: str | Path, slides: Sequence[str]) -> TileIndex:
        """Index the complete shards of ``slides`` in ``shard_dir``.

        Raises:
            FileNotFoundError: a slide has no complete shard, or its shard is damaged (truncated,
                overwritten): names the slide, the shard and what to do.
            ValueError: a shard that passed its checks cannot be read as a tar, or holds another number of
                tiles than its index (names it; its full check is forgotten, so the next run re-extracts it).
        """
        shard_dir = Path(shard_dir)
        paths, slide_idx, offsets, sizes, locs = [], [], [], [], []
        for i, slide in enumerate(slides):
            index = read_index(shard_dir, slide)
            if index is None:
                damage = shard_damage(shard_dir, slide)
                if damage is not None:
                    raise FileNotFoundError(
                        f"The tile shard of slide '{slide}' is damaged: {damage}. Run the extraction again "
                        f"(train.py or extract.py) to re-extract it from the slide file"
                    )
                raise FileNotFoundError(f"No complete tile shard for slide '{slide}' in {shard_dir}")
            path = shard_dir / f"{slide}.tar"
            try:
                slide_offsets, slide_sizes = _image_members(path)
                problem = None
                if len(slide_offsets) != index["num_tiles"]:
                    problem = f"it holds {len(slide_offsets)} images but its index says {index['num_tiles']}"
            except (tarfile.TarError, OSError) as err:
                problem = f"it cannot be read ({err})"
            if problem is not None:  # damaged after its full check: the next run checks it again
                forget_verified(path)
                raise ValueError(
                    f"The tile shard {path} of slide '{slide}' is damaged: {problem}. Run again: its CRC32 is "
                    "checked in full then, and the shard extracted again from the slide file"
                )
            paths.append(path)
            slide_idx.append(np.full(len(slide_offsets), i, np.int32))
            offsets.append(np.asarray(slide_offsets, np.int64))
            sizes.append(np.asarray(slide_sizes, np.int64))
            locs.append(np.asarray(index["locations"], np.int64).reshape(-1, 2))
        return cls(
            slides=list(slides),
            paths=paths,
            slide_idx=np.concatenate(slide_idx) if slide_idx else np.zeros(0, np.int32),
            offset=np.concatenate(offsets) if offsets else np.zeros(0, np.int64),
            size=np.concatenate(sizes) if sizes else np.zeros(0, np.int64),
            loc=np.concatenate(locs) if locs else np.zeros((0, 2), np.int64),
        )


def _image_members(path: Path) -> tuple[list[int], list[int]]:
    offsets, sizes = [], []
    with tarfile.open(path) as tar:
        for member in tar:
            if member.isfile() and member.name.rsplit(".", 1)[-1] in ("jpg", "jpeg", "png"):
                offsets.append(member.offset_data)
                sizes.append(member.size)
    return offsets, sizes


class TileItems(TorchDataset):
    """What every tile source yields: a decoded tile joined with its slide's targets and clinical inputs.

    Each item is a dict: ``image`` (uint8 CxHxW RGB after ``transform``, which must map uint8 tiles to
    uint8 tiles; the model scales them), ``target`` (float vector of the slide's encoded outcomes),
    ``clinical`` (float vector, may be empty), ``slide`` (int index into the source's slides) and ``tile``
    (int index into its tiles). Subclasses implement ``read_image`` and ``__len__``; ``slide_idx`` is the
    (n_tiles,) slide of each tile.

    Args:
        slide_idx: (n_tiles,) slide of each tile.
        targets: (n_slides, n_targets) encoded outcomes.
        clinical: (n_slides, n_clinical) clinical inputs (None: none).
        transform: uint8 tile → uint8 tile (stain normalizer, augmentations), or None.
    """

    def __init__(
        self,
        slide_idx: np.ndarray,
        targets: np.ndarray,
        clinical: np.ndarray | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.slide_idx = np.asarray(slide_idx)
        self.targets = torch.as_tensor(targets, dtype=torch.float32)
        n = len(self.targets)
        self.clinical = torch.as_tensor(
            clinical if clinical is not None else np.zeros((n, 0), np.float32), dtype=torch.float32
        )
        self.transform = transform

    def __len__(self) -> int:
        return len(self.slide_idx)

    def read_image(self, tile: int) -> torch.Tensor:
        """Tile ``tile`` as a uint8 CxHxW RGB tensor, before ``transform``."""
        raise NotImplementedError

    def item(self, image: torch.Tensor, slide: int, tile: int) -> dict[str, torch.Tensor | int]:
        """The item of a decoded tile of slide ``slide`` (``transform`` applied here)."""
        if self.transform is not None:
            image = self.transform(image)
            if image.dtype != torch.uint8:
                raise TypeError(f"The tile transform {self.transform!r} returned {image.dtype}; it must return uint8")
        return {
            "image": image,  # uint8: 4x less to move to the GPU than floats; TileNet scales it
            "target": self.targets[slide],
            "clinical": self.clinical[slide],
            "slide": slide,
            "tile": tile,
        }

    def __getitem__(self, tile: int) -> dict[str, torch.Tensor | int]:
        return self.item(self.read_image(tile), int(self.slide_idx[tile]), tile)


class TileDataset(TileItems):
    """Tiles of a set of slides read from their shards (one ``pread`` per tile), as :class:`TileItems`.

    Args:
        index: Where the tiles are.
        targets: (n_slides, n_targets) encoded outcomes.
        clinical: (n_slides, n_clinical) clinical inputs (None: none).
        transform: uint8 tile → uint8 tile, or None.
        max_open_files: Shard files kept open per process.
    """

    def __init__(
        self,
        index: TileIndex,
        targets: np.ndarray,
        clinical: np.ndarray | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        max_open_files: int = 64,
    ) -> None:
        super().__init__(index.slide_idx, targets, clinical, transform)
        self.index = index
        self.max_open_files = max_open_files
        self._files: OrderedDict[int, int] = OrderedDict()
        self._pid = -1

    def _fd(self, slide: int) -> int:
        if self._pid != os.getpid():  # opened in a parent process: never share descriptors
            self._files, self._pid = OrderedDict(), os.getpid()
        fd = self._files.get(slide)
        if fd is None:
            fd = os.open(self.index.paths[slide], os.O_RDONLY)
            self._files[slide] = fd
            if len(self._files) > self.max_open_files:
                os.close(self._files.popitem(last=False)[1])
        else:
            self._files.move_to_end(slide)
        return fd

    def read_image(self, tile: int) -> torch.Tensor:
        """Decode tile ``tile`` (JPEG or PNG, as ``tiles.img_format`` stored it) as a uint8 CxHxW RGB tensor."""
        slide = int(self.index.slide_idx[tile])
        data = os.pread(self._fd(slide), int(self.index.size[tile]), int(self.index.offset[tile]))
        return decode_tile(data)

    def __del__(self) -> None:
        if getattr(self, "_pid", None) == os.getpid():
            for fd in self._files.values():
                os.close(fd)


def decode_tile(data: bytes) -> torch.Tensor:
    """Decode a stored tile's JPEG or PNG bytes as a uint8 CxHxW RGB tensor (libjpeg-turbo / libpng)."""
    return decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)


class SlideFeatureDataset(TorchDataset):
    """One item per slide with no image, for clinical-only models (``drop_images=true``)."""

    def __init__(self, slides: Sequence[str], targets: np.ndarray, clinical: np.ndarray) -> None:
        self.slides = list(slides)
        self.targets = torch.as_tensor(targets, dtype=torch.float32)
        self.clinical = torch.as_tensor(clinical, dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.slides)

    def __getitem__(self, slide: int) -> dict[str, torch.Tensor | int]:
        return {
            "image": torch.zeros(0),
            "target": self.targets[slide],
            "clinical": self.clinical[slide],
            "slide": slide,
            "tile": slide,
        }
