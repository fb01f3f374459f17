"""Heatmaps of tile predictions: a slide's value grid and its picture over the slide thumbnail.

What each outcome draws (which columns, the colour map and its fixed scale) is its kind's
:meth:`~src.outcomes.Outcome.heatmap_layers`; this module only lays the values on the tile grid and draws
them. Every slide of a model gets the same colour scale, so two heatmaps can be compared by eye.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import Normalize, TwoSlopeNorm

HEATMAP_ALPHA = 0.6  # opacity of the tile colours over the thumbnail (Slideflow's)


@dataclass(frozen=True)
class HeatmapLayer:
    """One panel of an outcome's heatmap: a prediction column drawn with a fixed colour scale.

    Attributes:
        column: The prediction column drawn (e.g. ``tumor_type-y_pred1``).
        title: Panel title (e.g. ``P(squamous)``).
        label: Colour-bar label.
        cmap: Matplotlib colour map name.
        vmin: Value drawn with the first colour (lower values are clipped to it).
        vmax: Value drawn with the last colour (higher values are clipped to it).
        vcenter: Value drawn with the middle colour (``None``: halfway between ``vmin`` and ``vmax``).
    """

    column: str
    title: str
    label: str
    cmap: str
    vmin: float
    vmax: float
    vcenter: float | None = None

    def norm(self) -> Normalize:
        """The colour normalization of this layer."""
        if self.vcenter is not None and self.vmin < self.vcenter < self.vmax:
            return TwoSlopeNorm(vcenter=self.vcenter, vmin=self.vmin, vmax=self.vmax)
        return Normalize(vmin=self.vmin, vmax=self.vmax, clip=True)


@dataclass
class ValueGrid:
    """Tile predictions laid on the slide's tile grid (NaN where no tile was kept).

    Attributes:
        values: ``(n_columns, rows, cols)`` float32 grid.
        columns: The prediction column of each plane.
        loc_x: ``(cols,)`` tile centre x of each grid column, level-0 px.
        loc_y: ``(rows,)`` tile centre y of each grid row, level-0 px.
        stride: Grid step in level-0 px.
        dimensions: Slide level-0 ``(width, height)``.
    """

    values: np.ndarray
    columns: list[str]
    loc_x: np.ndarray
    loc_y: np.ndarray
    stride: int
    dimensions: tuple[int, int]

    @classmethod
    def from_tiles(
        cls,
        loc_x: np.ndarray,
        loc_y: np.ndarray,
        columns: Mapping[str, np.ndarray],
        first_loc: tuple[int, int],
        shape: tuple[int, int],
        stride: int,
        dimensions: tuple[int, int],
    ) -> ValueGrid:
        """Lay tile values on a grid whose first tile centre is ``first_loc`` and whose size is ``shape``.

        Args:
            loc_x: Tile centres x (level-0 px), one per tile.
            loc_y: Tile centres y.
            columns: Prediction column → one value per tile.
            first_loc: Centre ``(x, y)`` of grid cell (0, 0).
            shape: Grid ``(rows, cols)``.
            stride: Grid step in level-0 px.
            dimensions: Slide level-0 ``(width, height)``.
        """
        rows, cols = shape
        col = np.rint((np.asarray(loc_x) - first_loc[0]) / stride).astype(int)
        row = np.rint((np.asarray(loc_y) - first_loc[1]) / stride).astype(int)
        values = np.full((len(columns), rows, cols), np.nan, np.float32)
        for plane, column in enumerate(columns.values()):
            values[plane, row, col] = column
        return cls(
            values,
            list(columns),
            first_loc[0] + stride * np.arange(cols),
            first_loc[1] + stride * np.arange(rows),
            int(stride),
            (int(dimensions[0]), int(dimensions[1])),
        )

    def plane(self, column: str) -> np.ndarray:
        """The ``(rows, cols)`` grid of one prediction column."""
        return self.values[self.columns.index(column)]

    def extent(self) -> tuple[float, float, float, float]:
        """``(left, right, bottom, top)`` of the grid in level-0 px (each cell centred on its tile)."""
        half = self.stride / 2
        return (
            float(self.loc_x[0] - half),
            float(self.loc_x[0] - half + self.stride * len(self.loc_x)),
            float(self.loc_y[0] - half + self.stride * len(self.loc_y)),
            float(self.loc_y[0] - half),
        )

    def save(self, path: str | Path, **extra: np.ndarray | float | str) -> None:
        """Write the grid as ``.npz`` (``values``, ``columns``, ``loc_x``, ``loc_y``, ``stride``, ...)."""
        arrays: dict[str, Any] = dict(extra)  # as arrays: none is named like savez's allow_pickle
        with open(path, "wb") as handle:
            np.savez_compressed(
                handle,
                values=self.values,
                columns=np.asarray(self.columns),
                loc_x=self.loc_x,
                loc_y=self.loc_y,
                stride=self.stride,
                dimensions=np.asarray(self.dimensions),
                **arrays,
            )


def draw_heatmap(
    thumbnail: np.ndarray, grid: ValueGrid, layers: Sequence[HeatmapLayer], path: str | Path, title: str
) -> Path:
    """Draw ``layers`` of ``grid`` over the slide thumbnail, one panel each with its colour bar.

    Cells without a tile stay transparent; each layer's colours follow its fixed scale (values outside
    ``[vmin, vmax]`` take the end colours).

    Args:
        thumbnail: ``(H, W, 3)`` uint8 RGB thumbnail of the whole slide.
        grid: The slide's value grid.
        layers: What to draw (from the outcome's kind).
        path: PNG to write.
        title: Figure title.
    """
    width, height = grid.dimensions
    aspect = height / max(width, 1)
    panel = 5.0
    fig, axes = plt.subplots(
        1, len(layers), figsize=(panel * len(layers) + 0.8, panel * aspect + 0.9), squeeze=False, layout="constrained"
    )
    for ax, layer in zip(axes[0], layers, strict=True):
        ax.imshow(thumbnail, extent=(0, width, height, 0), interpolation="antialiased")
        values = np.ma.masked_invalid(grid.plane(layer.column))
        image = ax.imshow(
            values,
            cmap=layer.cmap,
            norm=layer.norm(),
            alpha=HEATMAP_ALPHA,
            extent=grid.extent(),
            interpolation="nearest",
        )
        ax.set(xlim=(0, width), ylim=(height, 0), title=layer.title, xticks=[], yticks=[])
        fig.colorbar(image, ax=ax, shrink=0.8, label=layer.label)
    fig.suptitle(title)
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
    return Path(path)
