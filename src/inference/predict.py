"""The prediction behind predict.py: model(s) + slides → tile and slide predictions, heatmaps, evaluation.

Everything about the model comes from its checkpoint(s); every check of the inputs (model files,
annotations, clinical and outcome columns) runs before the first slide is read. A slide that fails
(no file, corrupt, no MPP, no tissue) is reported with its reason and the others go on; ``run`` returns
the number of failed slides (predict.py exits 1 when it is not 0). A slide whose tiles' colour lies far from
the training tiles' (``src.data.tile_colour``) is predicted, with a warning and ``colour_outlier`` in the report.
Messages name predict.py's own keys (``mpp_override=``, ``backend=``: ``src.command_keys``).
"""

from __future__ import annotations

import logging
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from src.command_keys import PREDICT_KEYS, command_keys
from src.config.validate import validate
from src.data.tile_colour import FAR_SDS, colour_distance
from src.inference.inputs import check_columns, check_rows, evaluation_targets, slide_inputs
from src.inference.live_tiles import StageTimes, with_stride
from src.inference.mil import MilPredictor, feature_encoder, is_mil, predict_mil_slide
from src.inference.models import checkpoint_paths, load_members
from src.inference.slide import PredictOptions, predict_slide
from src.inference.tables import REPORT_COLUMNS, slide_row, summary, write_csv, write_evaluation, write_tables
from src.infra.files import write_text_atomic
from src.infra.processes import use_threads
from src.outcomes import Outcome
from src.runs.naming import output_folder

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> int:
    """Predict (and evaluate) the configured slides; returns the number of slides that failed."""
    with command_keys(PREDICT_KEYS):  # hints name predict.py's keys (mpp_override=, backend=...)
        return _run(cfg)


def _run(cfg: DictConfig) -> int:
    validate(cfg)
    use_threads(cfg.get("torch_threads", "auto"), int(cfg.threads), "threads")  # the tile readers run alongside
    start = time.perf_counter()
    models = load_members(
        checkpoint_paths(cfg.model_path, cfg.get("epoch")), list(cfg.allowed_targets), list(cfg.allowed_kinds)
    )
    slides, annotations = slide_inputs(cfg.slides, cfg.get("annotations"), cfg.get("slides_dir"), cfg.backend)
    check_columns(annotations, models.input_header, "The model takes the clinical input(s)")
    needs = [f"the model's clinical input(s) {models.input_header}"] if models.input_header else []
    needs += [f"the evaluation of outcomes={list(cfg.outcomes)}"] if cfg.outcomes else []
    if annotations is not None:  # a slide of slides= without a row: stop if these need it, else warn
        check_rows(slides, str(cfg.get("annotations") or cfg.slides), " and ".join(needs))
    evaluated: list[Outcome] = []
    targets: dict[str, list[np.ndarray]] = {}
    if cfg.outcomes:
        if annotations is None:
            raise ValueError(f"outcomes={list(cfg.outcomes)} (evaluation) needs annotations=<csv> with those columns")
        evaluated, targets = evaluation_targets(annotations, models.outcomes, list(cfg.outcomes))
    predict, mil = partial(predict_slide, models=models), None
    if is_mil(models):
        encoder, dtype = feature_encoder(models, cfg.get("encoder_weights"), list(cfg.allowed_targets))
        mil = MilPredictor(models, encoder, dtype, str(cfg.get("device", "auto")))
        predict = partial(predict_mil_slide, predictor=mil)
    out = output_folder(cfg.get("outdir"), Path(cfg.paths.output_dir) / "predict")  # outdir=, Hydra's, or a new one
    write_text_atomic(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    options = PredictOptions(
        settings=with_stride(models.tiles, cfg.get("stride_div")),
        batch_size=int(cfg.batch_size),
        threads=int(cfg.threads),
        as_shards=bool(cfg.as_shards),
        heatmaps=bool(cfg.heatmaps),
        heatmap_px=int(cfg.heatmap_px),
        mpp_override=cfg.get("mpp_override"),
        backend=cfg.backend,
    )
    epochs = sorted({e for e in models.epochs if e is not None})
    log.info(
        "Predicting %d slide(s) with %d model(s) (epoch %s), %s, into %s",
        len(slides), len(models.members), epochs, options.settings.key, out,
    )  # fmt: skip
    report, rows, evaluation_tiles, times = [], [], [], StageTimes()
    for number, slide in enumerate(slides, 1):
        part = targets.get(slide.name)
        row = {"slide": slide.name, "path": str(slide.path or ""), "tiles": 0, "error": ""}
        tick = time.perf_counter()
        try:
            result = predict(slide, options=options, outdir=out, targets=part,
                             evaluated=evaluated if part is not None else ())  # fmt: skip
        except Exception as error:  # one bad slide must not stop the others
            log.debug("Slide %s failed", slide.name, exc_info=True)
            row.update(status="failed", error=f"{type(error).__name__}: {error}")
            log.error("[%d/%d] %s FAILED: %s", number, len(slides), slide.name, row["error"])
        else:
            row.update(status="done", tiles=len(result.tiles), **colour_check(slide.name, result.colour, models.colour))
            rows.append(result.row or slide_row(result.tiles, models.output_columns()))
            times.add(result.times)
            if part is not None:
                evaluation_tiles.append(pd.DataFrame([result.row]) if mil else result.tiles)
            log.info("[%d/%d] %s: %d tiles in %.1f s", number, len(slides), slide.name, row["tiles"], result.seconds)
        row["seconds"] = round(time.perf_counter() - tick, 3)
        report.append(row)
    if rows:
        write_tables(rows, models.output_columns(), out, weight_by_tiles=mil is None)
    report = pd.DataFrame(report, columns=REPORT_COLUMNS)
    write_csv(report, out / "report.csv")
    if evaluation_tiles:
        epoch = epochs[-1] if epochs else 0
        info = {"model": str(cfg.model_path), "models": len(models.members), "slides": len(evaluation_tiles)}
        level = "slide" if mil else "tile"  # a MIL model predicts slides: there is no tile level
        tables = pd.concat(evaluation_tiles, ignore_index=True)
        metrics = write_evaluation(tables, evaluated, out, epoch, info, level=level)
        print("\n".join(f"  {name:<40} {value:.4f}" for name, value in metrics.items()))
    seconds = time.perf_counter() - start
    print(summary(report, seconds))
    print(
        f"  stages (s, main thread): waiting for tiles {times.reading:.1f}, model {times.model:.1f} "
        f"({times.model_cpu:.1f} CPU), drawing and tables {times.drawing:.1f}"
    )
    print(f"Predictions: {out}")
    return int((report.status == "failed").sum())


def colour_check(slide: str, colour: list[float] | None, training: dict | None) -> dict:
    """The report's ``colour_z`` and ``colour_outlier`` of a slide; warns (naming both colours) when it is far.

    Args:
        slide: The slide's name.
        colour: Its tiles' colour (mean RGB in [0, 1]); None: no tile read.
        training: The models' training colour (``src.data.tile_colour``); None: not recorded (no check).
    """
    if colour is None or training is None:
        return {}
    z = colour_distance(colour, training)
    if z > FAR_SDS:
        log.warning(
            "Slide %s: its tiles' colour (mean RGB %s) lies %.1f SDs from the training tiles' (mean RGB %s, SD %s "
            "between %d training slides; more than %g is flagged): a different stain, a dark-field or fluorescence "
            "scan? Its predictions may mean little (report.csv colour_outlier)",
            slide, _rgb(colour), z, _rgb(training["mean"]), _rgb(training["sd"]), training["slides"], FAR_SDS,
        )  # fmt: skip
    return {"colour_z": round(z, 2), "colour_outlier": z > FAR_SDS}


def _rgb(values: list[float]) -> str:
    return "(" + ", ".join(f"{v:.3f}" for v in values) + ")"
