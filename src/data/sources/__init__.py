"""Tile sources behind one interface (`base.TileSource`), chosen by ``dataset=``.

Shards read at random (``dataset=shards``), shards streamed with webdataset (``dataset=shards_stream``) and
tiles read live from the slides (``dataset=wsi``).

The ``dataset`` config names its source with ``tile_source._target_``; a new source is one module here and one
``conf/dataset/<name>.yaml``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hydra.utils import instantiate

from src.data.sources.base import SourceTiles, TileSource
from src.data.sources.shards import ShardSource

__all__ = ["ShardSource", "SourceTiles", "TileSource", "tile_source"]


def tile_source(dataset_cfg: Mapping[str, Any] | None) -> TileSource:
    """The source a ``dataset`` config names (``tile_source``); shards when it names none (e.g. ``dataset=features``).

    Raises:
        TypeError: ``tile_source`` does not build a `TileSource`.
    """
    spec = (dataset_cfg or {}).get("tile_source")
    if not spec:
        return ShardSource()
    source = instantiate(spec)
    if not isinstance(source, TileSource):
        raise TypeError(f"dataset.tile_source must build a src.data.sources.base.TileSource, got {type(source)!r}")
    return source
