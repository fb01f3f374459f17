"""Tile extraction settings (the `tiles` config group), validated, with a shard-folder key."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from src.slides.grid import parse_magnification
from src.slides.tiles import TissueFilter

IMG_FORMATS = ("jpg", "png")
TISSUE_KEYS = tuple(f.name for f in dataclasses.fields(TissueFilter))  # the tissue keys of the `tiles` group


@dataclass(frozen=True)
class TileSettings:
    """How tiles are cut from slides and filtered (Slideflow's defaults where it has them).

    The `tiles` config group (and :meth:`to_dict`, hence shard indexes, reports and checkpoints) is flat:
    the :class:`~src.slides.tiles.TissueFilter` keys (``qc``, ``filter_threshold``, ``grayspace_*``,
    ``whitespace_*``) sit beside the others; here they are the ``tissue`` filter.

    Attributes:
        tile_px: Tile side in pixels, as stored.
        tile_um: Tile side in microns, or a magnification such as ``"20x"``.
        stride_div: Grid step = tile side / stride_div.
        use_edge_tiles: Keep tiles running over the slide edge (padded white).
        tissue: The slide-level mask and the tile filters.
        img_format: ``"jpg"`` or ``"png"``.
        jpeg_quality: JPEG quality, 1-100.
    """

    tile_px: int
    tile_um: int | float | str
    stride_div: int = 1
    use_edge_tiles: bool = False
    tissue: TissueFilter = field(default_factory=TissueFilter)
    img_format: str = "jpg"
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        def fix(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if not isinstance(self.tile_px, int) or self.tile_px <= 0:
            raise ValueError(f"tiles.tile_px must be a positive int, got {self.tile_px!r}")
        if isinstance(self.tile_um, str):
            parse_magnification(self.tile_um)  # raises on anything but "20x"
            fix("tile_um", self.tile_um.strip().lower())
        elif not self.tile_um > 0:
            raise ValueError(f"tiles.tile_um must be > 0, got {self.tile_um!r}")
        elif float(self.tile_um).is_integer():
            fix("tile_um", int(self.tile_um))  # 64 and 64.0 share a shard folder
        if not isinstance(self.stride_div, int) or self.stride_div < 1:
            raise ValueError(f"tiles.stride_div must be an int >= 1, got {self.stride_div!r}")
        fix("use_edge_tiles", bool(self.use_edge_tiles))
        fix("img_format", str(self.img_format).lower().replace("jpeg", "jpg"))
        if self.img_format not in IMG_FORMATS:
            raise ValueError(f"tiles.img_format must be one of {IMG_FORMATS}, got {self.img_format!r}")
        if not 1 <= int(self.jpeg_quality) <= 100:
            raise ValueError(f"tiles.jpeg_quality must be 1-100, got {self.jpeg_quality}")
        fix("jpeg_quality", int(self.jpeg_quality))

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> TileSettings:
        """Build settings from a flat `tiles` mapping (the config group, or :meth:`to_dict` of older runs).

        Raises:
            ValueError: An unknown key (naming it) or an invalid value.
        """
        names = {f.name for f in dataclasses.fields(cls) if f.name != "tissue"} | set(TISSUE_KEYS)
        unknown = sorted(set(cfg) - names)
        if unknown:
            raise ValueError(f"Unknown tiles setting(s) {unknown}; known: {sorted(names)}")
        missing = sorted({"tile_px", "tile_um"} - set(cfg))
        if missing:
            raise ValueError(f"Missing tiles setting(s) {missing}")
        tissue = TissueFilter(**{key: cfg[key] for key in cfg if key in TISSUE_KEYS})
        return cls(tissue=tissue, **{key: cfg[key] for key in cfg if key not in TISSUE_KEYS})

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a flat, JSON-serialisable dict (the `tiles` keys, in the fields' order)."""
        flat: dict[str, Any] = {}
        for name, value in dataclasses.asdict(self).items():
            flat.update(value if name == "tissue" else {name: value})
        return flat

    @property
    def key(self) -> str:
        """Shard-folder name: ``"{tile_px}px_{tile_um}um_{hash}"``; any change, new key."""
        payload = json.dumps(self.to_dict(), sort_keys=True).encode()
        digest = hashlib.sha1(payload).hexdigest()[:8]
        size = self.tile_um if isinstance(self.tile_um, str) else f"{self.tile_um}um"
        return f"{self.tile_px}px_{size}_{digest}"
