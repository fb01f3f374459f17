"""What a fold folder records about its model.

``params.json`` (also inside every checkpoint) and ``slide_manifest.csv``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from src.data.base_datamodule import BaseFoldDataModule
from src.data.tile_colour import colour_stats
from src.infra.files import atomic_path, write_json_atomic

log = logging.getLogger(__name__)


def fold_params(hp: DictConfig, data: BaseFoldDataModule, net: Any, row_info: dict[str, Any]) -> dict[str, Any]:
    """Everything needed to rebuild and feed the model: outcomes, clinical fit, tiles, norm fit, config."""
    assert data.train is not None  # set by the data module's setup()
    tiles = data.train.dataset.tiles
    return {
        "model_name": row_info.get("model"),
        "outcomes": [o.to_dict() for o in data.outcomes],
        "input_header": list(hp.input_header or []),
        "clinical_encoder": data.encoder.to_dict(),
        "tile_px": tiles.tile_px if tiles else None,
        "tile_um": tiles.tile_um if tiles else None,
        "tile_settings": tiles.to_dict() if tiles else None,
        "norm_fit": data.normalizer.get_fit() if data.normalizer is not None else None,
        "input_stats": net.input_stats(),  # the model's input scaling (also in its buffers)
        "tile_colour": training_colour(data),  # the training slides' colour (predict.py flags slides far from it)
        "hp": OmegaConf.to_container(hp, resolve=True),
        "net_kwargs": getattr(data, "net_kwargs", dict)(),  # what the net needs besides heads (MIL: feature width)
        "feature_bags": getattr(data, "bags_config", dict)() or None,  # MIL: encoder, weights SHA-256, dtype
        **row_info,
    }


def training_colour(data: BaseFoldDataModule) -> dict[str, Any] | None:
    """The colour of the training slides' tiles (:func:`~src.data.tile_colour.colour_stats`); None without tiles."""
    tiles = getattr(getattr(data, "train", None), "data", None)
    read_image = getattr(tiles, "read_image", None)
    if tiles is None or read_image is None or not len(getattr(tiles, "slide_idx", ())):  # clinical-only, MIL bags
        return None
    try:
        return colour_stats(read_image, tiles.slide_idx)
    except (NotImplementedError, RuntimeError) as error:  # a tile source without random access (remote shards)
        log.info("No training tile colour recorded (predict.py will not compare slides' colours): %s", error)
        return None


def write_fold_files(outdir: Path, params: dict[str, Any], data: BaseFoldDataModule, labels: Any) -> None:
    """Write ``params.json`` and ``slide_manifest.csv`` (slide, patient, training/validation, label)."""
    write_json_atomic(outdir / "params.json", params)
    rows = []
    for slide_set, role in ((data.train, "training"), (data.val, "validation")):
        if slide_set is None:
            continue
        for slide, patient in zip(slide_set.slides, slide_set.patients, strict=True):
            rows.append({"slide": slide, "patient": patient, "dataset": role, "outcome_label": labels[slide]})
    with atomic_path(outdir / "slide_manifest.csv") as tmp:
        pd.DataFrame(rows, columns=["slide", "patient", "dataset", "outcome_label"]).to_csv(tmp, index=False)
