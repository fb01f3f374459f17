"""Rules of the extraction settings of a composed config: ``tiles``, the project's MPP keys and its ``_target_``.

Every config that extracts tiles holds them (``conf/extract.yaml`` and ``conf/train.yaml``), so
:func:`src.config.validate.validate` checks them for both; ``extract.py`` calls :func:`validate_extraction`
alone. This module imports neither torch nor torchvision, so an extraction process starts without them.
"""

from __future__ import annotations

from collections.abc import Mapping

from omegaconf import DictConfig

from src.config.signatures import check_signatures
from src.errors import ConfigError
from src.slides.tile_settings import TileSettings

#: The nodes extraction builds: only the (demo) project; the dataset's nodes are built by training.
EXTRACTION_NODES = ("project",)


def validate_extraction(cfg: DictConfig) -> None:
    """Reject tile settings or project MPP keys that cannot run, before any slide is read.

    Args:
        cfg: A composed extraction (``conf/extract.yaml``) or training (``conf/train.yaml``) config.

    Raises:
        ConfigError: naming the key, the bad value and what is allowed.
    """
    try:
        TileSettings.from_config(cfg.tiles)
    except ConfigError:
        raise
    except ValueError as error:  # its message already names the key
        raise ConfigError(str(error)) from error
    _check_project_mpp(cfg.get("project") or {})
    check_signatures(cfg, within=EXTRACTION_NODES)  # e.g. a misspelt key of the demo project's generator


def _check_project_mpp(project: Mapping) -> None:
    """``project.mpp_override``: null or a positive number (µm/px); ``project.mpp_column``: null or a column name.

    Raises:
        ConfigError: naming the key, the bad value and what is allowed.
    """
    override = project.get("mpp_override")
    number = isinstance(override, int | float) and not isinstance(override, bool)
    if override is not None and not (number and 0 < override < float("inf")):
        raise ConfigError(
            f"project.mpp_override={override!r} must be null or a positive number of microns per pixel (e.g. 0.5)"
        )
    column = project.get("mpp_column")
    if column is not None and (not isinstance(column, str) or not column.strip()):
        raise ConfigError(f"project.mpp_column={column!r} must be null or the name of an annotation column")
