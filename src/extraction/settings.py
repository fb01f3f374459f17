"""Tile extraction settings (the `tiles` config group), validated, with a shard-folder key."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from src.slides.grid import parse_magnification
from src.slides.tiles import QC_METHODS, TissueFilter

IMG_FORMATS = ("jpg", "png")


@dataclass(frozen=True)
class TileSettings:
    """How tiles are cut from slides and filtered (Slideflow's defaults where it has them).

    Attributes:
        tile_px: Tile side in pixels, as stored.
        tile_um: Tile side in microns, or a magnification such as ``"20x"``.
        stride_div: Grid step = tile side / stride_div.
        use_edge_tiles: Keep tiles running over the slide edge (padded white).
        qc: Slide-level tissue mask: ``"otsu"`` or None.
        filter_threshold: Drop a tile whose Otsu background fraction is above this.
        grayspace_fraction: Drop a tile whose gray-pixel fraction is above this (1 = off).
        grayspace_threshold: HSV saturation (0-1) below which a pixel is gray.
        whitespace_fraction: Drop a tile whose white-pixel fraction is above this (1 = off).
        whitespace_threshold: RGB mean (0-255) above which a pixel is white.
        img_format: ``"jpg"`` or ``"png"``.
        jpeg_quality: JPEG quality, 1-100.
    """

    tile_px: int
    tile_um: int | float | str
    stride_div: int = 1
    use_edge_tiles: bool = False
    qc: str | None = "otsu"
    filter_threshold: float = 0.6
    grayspace_fraction: float = 0.6
    grayspace_threshold: float = 0.05
    whitespace_fraction: float = 1.0
    whitespace_threshold: float = 230
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
        qc = self.qc.lower() if isinstance(self.qc, str) else self.qc
        fix("qc", None if qc in ("none", "null", "") else qc)
        if self.qc not in QC_METHODS:
            raise ValueError(f"tiles.qc must be one of {QC_METHODS}, got {self.qc!r}")
        for name in (
            "filter_threshold",
            "grayspace_fraction",
            "grayspace_threshold",
            "whitespace_fraction",
            "whitespace_threshold",
        ):
            fix(name, float(getattr(self, name)))
        fix("use_edge_tiles", bool(self.use_edge_tiles))
        fix("img_format", str(self.img_format).lower().replace("jpeg", "jpg"))
        if self.img_format not in IMG_FORMATS:
            raise ValueError(f"tiles.img_format must be one of {IMG_FORMATS}, got {self.img_format!r}")
        if not 1 <= int(self.jpeg_quality) <= 100:
            raise ValueError(f"tiles.jpeg_quality must be 1-100, got {self.jpeg_quality}")
        fix("jpeg_quality", int(self.jpeg_quality))

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> TileSettings:
        """Build settings from a `tiles` config mapping (dict or OmegaConf DictConfig).

        Raises:
            ValueError: An unknown key (naming it) or an invalid value.
        """
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(cfg) - names)
        if unknown:
            raise ValueError(f"Unknown tiles setting(s) {unknown}; known: {sorted(names)}")
        missing = sorted({"tile_px", "tile_um"} - set(cfg))
        if missing:
            raise ValueError(f"Missing tiles setting(s) {missing}")
        return cls(**{key: cfg[key] for key in cfg})

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a plain JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @property
    def key(self) -> str:
        """Shard-folder name: ``"{tile_px}px_{tile_um}um_{hash}"``; any change, new key."""
        payload = json.dumps(self.to_dict(), sort_keys=True).encode()
        digest = hashlib.sha1(payload).hexdigest()[:8]
        size = self.tile_um if isinstance(self.tile_um, str) else f"{self.tile_um}um"
        return f"{self.tile_px}px_{size}_{digest}"

    def tissue_filter(self) -> TissueFilter:
        """Return the tissue filters these settings describe."""
        return TissueFilter(
            qc=self.qc,
            filter_threshold=self.filter_threshold,
            grayspace_fraction=self.grayspace_fraction,
            grayspace_threshold=self.grayspace_threshold,
            whitespace_fraction=self.whitespace_fraction,
            whitespace_threshold=self.whitespace_threshold,
        )
