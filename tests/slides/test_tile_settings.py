"""TileSettings: config parity, validation, the shard-folder key and the flat on-disk form of older runs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from src.slides.tile_settings import TileSettings
from src.slides.tiles import TissueFilter

CONF = Path(__file__).resolve().parents[2] / "conf" / "tiles"


# keys of shard folders made before TileSettings held a TissueFilter: existing shards must stay found
KEYS = {"demo": "64px_64um_602261db", "slideflow": "299px_302um_fd2fa11d"}


@pytest.mark.parametrize("name", ["demo", "slideflow"])
def test_every_tiles_config_loads(name: str) -> None:
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    settings = TileSettings.from_config(cfg)
    assert list(settings.to_dict()) == list(cfg.keys())  # flat, in the YAML's order, as shard indexes hold it
    assert settings.key == KEYS[name]
    assert settings.tissue == TissueFilter(**{key: cfg[key] for key in dataclasses.asdict(settings.tissue)})


def test_tile_settings_of_an_older_checkpoint_load_and_write_back_unchanged() -> None:
    older = {  # params.json / checkpoint ``tile_settings`` as runs wrote them before (flat; filters inline)
        "tile_px": 64,
        "tile_um": "20x",
        "stride_div": 1,
        "use_edge_tiles": False,
        "qc": None,
        "filter_threshold": 0.6,
        "grayspace_fraction": 0.5,
        "grayspace_threshold": 0.05,
        "whitespace_fraction": 1.0,
        "whitespace_threshold": 230.0,
        "img_format": "jpg",
        "jpeg_quality": 95,
    }
    settings = TileSettings.from_config(older)
    assert settings.tissue == TissueFilter(qc=None, grayspace_fraction=0.5)
    assert json.dumps(settings.to_dict()) == json.dumps(older)
    assert settings.key == "64px_20x_c6eb8243"


def test_key_changes_with_any_setting() -> None:
    base = TileSettings(tile_px=64, tile_um=64)
    assert base.key == TileSettings(tile_px=64, tile_um=64.0).key
    others = [
        TileSettings(tile_px=64, tile_um=64, jpeg_quality=90),
        TileSettings(tile_px=64, tile_um=64, tissue=TissueFilter(qc=None)),
        TileSettings(tile_px=64, tile_um=64, tissue=TissueFilter(grayspace_fraction=0.5)),
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
    with pytest.raises(ValueError, match=r"tiles\.qc must be one of .*'blur'"):
        TileSettings.from_config({"tile_px": 64, "tile_um": 64, "qc": "blur"})
    with pytest.raises(ValueError, match="tissue"):  # the filters are flat keys in the config, not a group
        TileSettings.from_config({"tile_px": 64, "tile_um": 64, "tissue": {"qc": None}})
    assert TileSettings.from_config({"tile_px": 64, "tile_um": 64, "qc": "None"}).tissue.qc is None
