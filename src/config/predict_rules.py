"""Rules of a composed ``conf/predict.yaml``, checked by :func:`src.config.validate` before any file is read.

Each error names the key, its value and what is allowed. Whether the model files and annotations are
sound is checked next, when they are loaded, still before the first slide is read.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, ListConfig

from src.errors import ConfigError
from src.infra.processes import thread_setting
from src.slides.reader import reader_class

MIN_HEATMAP_PX = 64


def validate_predict(cfg: DictConfig) -> None:
    """Reject a prediction config that cannot run.

    Raises:
        ConfigError: naming the key, the bad value and what is allowed.
    """
    if not Path(str(cfg.model_path)).exists():
        raise ConfigError(
            f"model_path={cfg.model_path!r} does not exist: give a checkpoint (.ckpt), a fold folder or a run folder"
        )
    slides = cfg.slides
    if isinstance(slides, ListConfig | list):
        if not slides:
            raise ConfigError("slides=[] lists no slide: give a folder, a list of slide files or an annotations .csv")
    elif not isinstance(slides, str) or not slides:
        raise ConfigError(f"slides={slides!r}: give a folder, a list of slide files or an annotations .csv")
    for key in ("batch_size", "threads"):
        if cfg[key] < 1:
            raise ConfigError(f"{key}={cfg[key]} must be at least 1")
    try:
        thread_setting(cfg.get("torch_threads", "auto"))
    except ValueError as error:
        raise ConfigError(str(error)) from error
    for key, low in (("stride_div", 1), ("epoch", 1)):
        if cfg.get(key) is not None and cfg[key] < low:
            raise ConfigError(f"{key}={cfg[key]} must be null or at least {low}")
    if cfg.heatmap_px < MIN_HEATMAP_PX:
        raise ConfigError(f"heatmap_px={cfg.heatmap_px} must be at least {MIN_HEATMAP_PX}")
    override = cfg.get("mpp_override")
    if override is not None and not 0 < override < float("inf"):
        raise ConfigError(f"mpp_override={override!r} must be null or a positive number of microns per pixel")
    if cfg.outcomes and not cfg.get("annotations") and not str(slides).lower().endswith(".csv"):
        raise ConfigError(
            f"outcomes={list(cfg.outcomes)} (evaluation) needs annotations=<csv> with those outcome columns"
        )
    try:
        reader_class(cfg.backend)
    except ValueError as error:
        raise ConfigError(f"backend={cfg.backend!r}: {error}") from error
