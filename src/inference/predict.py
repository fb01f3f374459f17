"""The prediction behind predict.py: model(s) + slides → tile and slide predictions, heatmaps, evaluation.

Everything about the model comes from its checkpoint(s); every check of the inputs (model files,
annotations, clinical and outcome columns) runs before the first slide is read. A slide that fails
(no file, corrupt, no MPP, no tissue) is reported with its reason and the others go on; ``run`` returns
the number of failed slides (predict.py exits 1 when it is not 0).
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime
from functools import partial
from pathlib import Path

import pandas as pd
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from src.config import validate
from src.inference.inputs import check_columns, evaluation_targets, slide_inputs
from src.inference.live_tiles import StageTimes, with_stride
from src.inference.mil import MilPredictor, feature_encoder, is_mil, predict_mil_slide
from src.inference.models import checkpoint_paths, load_members
from src.inference.slide import PredictOptions, predict_slide
from src.inference.tables import REPORT_COLUMNS, slide_row, summary, write_csv, write_evaluation, write_tables
from src.processes import use_threads

log = logging.getLogger(__name__)


def output_dir(cfg: DictConfig) -> Path:
    """``outdir``, else Hydra's job folder, else a fresh unique folder under ``paths.output_dir/predict``."""
    if cfg.get("outdir"):
        path = Path(cfg.outdir)
    elif HydraConfig.initialized():
        path = Path(HydraConfig.get().runtime.output_dir)
    else:
        stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        path = Path(cfg.paths.output_dir) / "predict" / f"{stamp}_{uuid.uuid4().hex[:6]}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def run(cfg: DictConfig) -> int:
    """Predict (and evaluate) the configured slides; returns the number of slides that failed."""
    validate(cfg)
    use_threads(cfg.get("torch_threads", "auto"), int(cfg.threads), "threads")  # the tile readers run alongside
    start = time.perf_counter()
    models = load_members(
        checkpoint_paths(cfg.model_path, cfg.get("epoch")), list(cfg.allowed_targets), list(cfg.allowed_kinds)
    )
    slides, annotations = slide_inputs(cfg.slides, cfg.get("annotations"), cfg.get("slides_dir"), cfg.backend)
    check_columns(annotations, models.input_header, "The model takes the clinical input(s)")
    evaluated, targets = [], {}
    if cfg.outcomes:
        if annotations is None:
            raise ValueError(f"outcomes={list(cfg.outcomes)} (evaluation) needs annotations=<csv> with those columns")
        evaluated, targets = evaluation_targets(annotations, models.outcomes, list(cfg.outcomes))
    predict, mil = partial(predict_slide, models=models), None
    if is_mil(models):
        encoder, dtype = feature_encoder(models, cfg.get("encoder_weights"), list(cfg.allowed_targets))
        mil = MilPredictor(models, encoder, dtype, str(cfg.get("device", "auto")))
        predict = partial(predict_mil_slide, predictor=mil)
    out = output_dir(cfg)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
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
            row.update(status="done", tiles=len(result.tiles))
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
