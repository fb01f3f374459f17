"""TileSettings: config parity, validation and the shard-folder key."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from src.extraction.settings import TileSettings

CONF = Path(__file__).resolve().parents[2] / "conf" / "tiles"


@pytest.mark.parametrize("name", ["demo", "slideflow"])
def test_every_tiles_config_loads(name: str) -> None:
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    settings = TileSettings.from_config(cfg)
    assert settings.to_dict().keys() == set(cfg.keys())
    assert settings.key.startswith(f"{cfg.tile_px}px_{cfg.tile_um}um_")


def test_key_changes_with_any_setting() -> None:
    base = TileSettings(tile_px=64, tile_um=64)
    assert base.key == TileSettings(tile_px=64, tile_um=64.0).key
    others = [
        TileSettings(tile_px=64, tile_um=64, jpeg_quality=90),
        TileSettings(tile_px=64, tile_um=64, qc=None),
        TileSettings(tile_px=64, tile_um=64, grayspace_fraction=0.5),
        TileSettings(tile_px=64, tile_um="20x"),
    ]
    keys = {base.key} | {s.key for s in others}
    assert len(keys) == 5
    assert TileSettings(tile_px=64, tile_um="20X").key.startswith("64px_20x_")


def test_bad_settings_name_the_key() -> None:
    with pytest.raises(ValueError, match="tile_sizes"):
        TileSettings.from_config({"tile_px": 64, "tile_um": 64, "tile_sizes": 1})
    with pytest.raises(ValueError, match="img_format"):
        TileSettings(tile_px=64, tile_um=64, img_format="bmp")
    with pytest.raises(ValueError, match="tile_um"):
        TileSettings(tile_px=64, tile_um="wide")
    with pytest.raises(ValueError, match="qc"):
        TileSettings(tile_px=64, tile_um=64, qc="blur")
    assert TileSettings(tile_px=64, tile_um=64, qc="none").qc is None
