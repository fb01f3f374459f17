"""MIL models on new slides: live tiles → the model's feature encoder → the bag → slide prediction and attention.

A MIL checkpoint records what made its training bags (``feature_bags``: the encoder preset, its weights'
SHA-256, the stored dtype) and the bags' tile settings. Prediction rebuilds that encoder, checks that its
weights file is the one the model was trained on (same SHA-256), cuts the slide's tiles exactly as extraction
did (with the shard's JPEG round trip by default), encodes them, rounds the features to the bags' dtype and runs
the whole bag through each member at once (no ``bag_size`` sampling). Per slide, in ``{outdir}/slides/{slide}/``:
``tile_predictions.parquet`` (``slide``, ``patient``, ``loc_x``, ``loc_y``, ``attention``: the members' mean
attention, summing to 1 over the slide's tiles; absent for a model without attention), ``attention.png`` (the
attention over the thumbnail) and one ``slide_predictions.csv`` row with the bag's prediction columns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from src.config.targets import target_name
from src.errors import UnsafeFileError
from src.evaluation.attention_heatmaps import save_attention_heatmap
from src.features.bags import FeatureBags
from src.features.encoders import LAYER_KEYS, Encoder
from src.features.integrity import NonFiniteFeaturesError
from src.inference.inputs import SlideInput
from src.inference.models import ModelSet, prediction_columns, truth_columns
from src.inference.slide import TILE_TABLE, PredictOptions, SlideResult, live_outputs, tile_table
from src.infra.files import atomic_path
from src.models.mil.base import MilModel
from src.slides.reader import open_slide
from src.training.model_inputs import check_bag
from src.trust import TARGET_KEY, AllowList, offline_tree, unsafe_nodes

log = logging.getLogger(__name__)

ATTENTION_FILE = "attention.png"
ENCODER_CLASS = "src.features.encoders.Encoder"
KEY = "hp.dataset.bags.encoder"


def is_mil(models: ModelSet) -> bool:
    """Whether the models are MIL models (trained on feature bags)."""
    return isinstance(models.members[0].model.net, MilModel)


def feature_encoder(
    models: ModelSet, weights_path: str | None = None, allowed_targets: Iterable[str] = ()
) -> tuple[Encoder, str]:
    """The encoder that made the members' training bags, checked, and the dtype the bags stored.

    Args:
        models: MIL members (they must share one encoder).
        weights_path: The encoder's weights file, when it is not where the model was trained with it.
        allowed_targets: More ``_target_``s the encoder may be built from (beyond ``conf/encoder/*.yaml``).

    Raises:
        UnsafeFileError: the stored encoder config names code that is not allowed.
        ValueError: a checkpoint without its bags' record, or members trained on different encoders.
        FileNotFoundError: the weights file is missing (saying how to point at it).
    """
    first = models.members[0]
    records = [m.model.params.get("feature_bags") or {} for m in models.members]
    configs = [_stored_encoder(m.model.params) for m in models.members]
    if not records[0] or not isinstance(configs[0], dict):
        raise ValueError(
            f"{first.path} records no feature bags (params feature_bags / hp.dataset.bags.encoder): it was written "
            "before MIL checkpoints were self-describing; retrain it to predict from slides"
        )
    for member, record, config in zip(models.members[1:], records[1:], configs[1:], strict=True):
        if record.get("weights_sha256") != records[0].get("weights_sha256") or config != configs[0]:
            raise ValueError(f"{member.path} was trained on other features than {first.path}: they cannot be averaged")
    config = dict(configs[0])
    stored_weights = config.pop("weights_path", None)  # the encoder's own file: its SHA-256 is checked below
    problems = stored_encoder_problems(config, allowed_targets)
    if stored_weights is not None and not isinstance(stored_weights, str):
        problems.append(f"{KEY}.weights_path={stored_weights!r} is not a path")
    if problems:
        raise UnsafeFileError(
            f"{first.path} was not loaded: its encoder config names code that is not allowed (nothing was built):\n"
            "  - " + "\n  - ".join(problems) + "\nAllowed: the targets of conf/encoder/*.yaml (each at the key "
            "where conf/encoder places it) and allowed_targets; layer names (act_layer, mlp_layer) only as "
            "conf/encoder/*.yaml names them; no key or value that fetches weights."
        )
    kwargs = {k: v for k, v in offline_tree(config, KEY)[0].items() if not k.startswith("_")}
    kwargs["weights_path"] = str(weights_path) if weights_path else stored_weights
    encoder = Encoder(**kwargs)
    encoder.check()  # a missing file: the error names predict.py's encoder_weights= (src.command_keys)
    expected = records[0].get("weights_sha256")
    actual = encoder.weights_sha256()
    if expected and actual != expected:
        raise ValueError(
            f"encoder={encoder.name}: {encoder.weights_path or 'its generated weights'} (SHA-256 {actual[:12]}…) is "
            f"not the file the model was trained with (SHA-256 {expected[:12]}…): its features would differ"
        )
    return encoder, str(records[0].get("dtype", "float32"))


def stored_encoder_problems(config: Any, allowed_targets: Iterable[str] = ()) -> list[str]:
    """What in a stored encoder config (``hp.dataset.bags.encoder``, without its ``weights_path``) is refused.

    The rules of :mod:`src.trust`, checked before anything is built (``Encoder.weights_sha256`` builds the model
    when the encoder has no weights file): plain data; every ``_target_`` and layer name (``act_layer``,
    ``mlp_layer``) one that ``conf/encoder/*.yaml`` holds at that key (targets also from ``allowed_targets``);
    the top node an :class:`Encoder`; nothing that fetches weights (``pretrained`` is forced off).
    """
    rules = AllowList.from_conf(
        "encoder", keys=(TARGET_KEY, *LAYER_KEYS), anywhere={target_name(t) for t in allowed_targets}
    )
    resolved = {TARGET_KEY: "target", **dict.fromkeys(LAYER_KEYS, "layer")}
    problems = unsafe_nodes(config, rules, KEY, resolved)
    if not isinstance(config, dict) or config.get(TARGET_KEY) != ENCODER_CLASS:
        target = config.get(TARGET_KEY) if isinstance(config, dict) else None
        problems.append(f"{KEY}._target_={target!r} is not {ENCODER_CLASS}")
    return problems or offline_tree(config, KEY)[1]


def _stored_encoder(params: dict[str, Any]) -> Any:
    """The encoder config a checkpoint's run made its bags with (``hp.dataset.bags.encoder``)."""
    return ((params.get("hp") or {}).get("dataset") or {}).get("bags", {}).get("encoder")


@dataclass
class MilPredictor:
    """MIL members with the encoder of their bags.

    Attributes:
        models: The members.
        encoder: Their bags' encoder.
        dtype: The bags' stored dtype (features are rounded to it, as training saw them).
        device: Where the encoder runs: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
    """

    models: ModelSet
    encoder: Encoder
    dtype: str = "float32"
    device: str = "cpu"

    def __post_init__(self) -> None:
        # the bag extractor's own encoding (device, autocast at the preset's precision), so features match training's
        self._bags = FeatureBags(self.encoder, dtype=self.dtype, device=self.device)
        self._net = self.encoder.build().to(self._bags.device)
        self._transform = self.encoder.transform().to(self._bags.device)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(n, n_features) float32 features of uint8 tiles, rounded to the bags' dtype."""
        features = self._bags.encode(self._net, self._transform, images).cpu()
        return features.to(getattr(torch, self.dtype)).float()

    @torch.inference_mode()
    def predict_bag(
        self, features: torch.Tensor, clinical: Sequence[torch.Tensor]
    ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """The members' mean prediction columns (one row) and mean attention ``(n_tiles,)`` (None: no attention)."""
        first = self.models.members[0].model
        features = check_bag(first.net, first.params, features, "MilPredictor.predict_bag()")
        total: dict[str, np.ndarray] = {}
        attention = []
        for member, inputs in zip(self.models.members, clinical, strict=True):
            outputs, weights = member.model.net(features[None], None, inputs, return_attention=True)
            for outcome, output in zip(self.models.outcomes, outputs, strict=True):
                for column, values in prediction_columns(outcome, output).items():
                    total[column] = total.get(column, 0) + values.astype(np.float64)
            if weights is not None:
                attention.append(weights[0].float().numpy())
        n = len(self.models.members)
        columns = {column: (values / n).astype(np.float32) for column, values in total.items()}
        return columns, (np.mean(attention, axis=0) if len(attention) == n else None)


def predict_mil_slide(
    slide: SlideInput,
    predictor: MilPredictor,
    options: PredictOptions,
    outdir: Path,
    targets: Sequence[np.ndarray] | None = None,
    evaluated: Sequence = (),
) -> SlideResult:
    """Predict one slide's bag; write its tile table (attention) and attention heatmap.

    Args:
        slide: The slide (its annotation row gives the clinical inputs).
        predictor: The MIL members and their encoder.
        options: Reading and drawing options.
        outdir: The prediction folder (files go to ``outdir/slides/{slide}/``).
        targets: In evaluation mode, one ``(1, n_targets)`` part per outcome of ``evaluated``.
        evaluated: The outcomes evaluated.

    Returns:
        The result, with ``row`` = the slide's prediction row (with truth columns in evaluation mode).

    Raises:
        FileNotFoundError: no file for the slide.
        SlideError: a slide that cannot be opened (corrupt, no MPP), naming it.
        NoTissueError: no tile passed the tissue filters.
    """
    start = time.perf_counter()
    models = predictor.models
    if slide.path is None:
        raise FileNotFoundError("no file for this slide among slides=")
    clinical = models.clinical(slide.row) if models.input_header else [torch.zeros(1, 0) for _ in models.members]
    with open_slide(slide.path, mpp_override=options.mpp_override, backend=options.backend) as reader:
        live, locs, features = live_outputs(reader, options, predictor.features)
        times = live.times
        bag = torch.cat(features)
        check_live_features(bag, slide.name, predictor.encoder)
        tick = time.perf_counter()
        columns, attention = predictor.predict_bag(bag, clinical)
        times.model += time.perf_counter() - tick
        tick = time.perf_counter()
        folder = outdir / "slides" / slide.name
        folder.mkdir(parents=True, exist_ok=True)
        per_tile = {} if attention is None else {"attention": attention.astype(np.float32)}
        tiles = tile_table(slide, locs, per_tile, None, ())
        with atomic_path(folder / TILE_TABLE, fsync=False) as tmp:
            tiles.to_parquet(tmp, index=False)
        if options.heatmaps and attention is not None:
            thumbnail = np.asarray(reader.get_thumbnail(options.heatmap_px))
            downsample = reader.dimensions[0] / thumbnail.shape[1]
            title = f"{slide.name}: {prediction_title(models.outcomes, columns)}"
            with atomic_path(folder / ATTENTION_FILE, fsync=False) as tmp:
                save_attention_heatmap(thumbnail, locs, attention, live.grid.full_extract_px, downsample, tmp, title)
        times.drawing += time.perf_counter() - tick
    row = slide_prediction_row(slide, len(locs), columns, targets, evaluated)
    return SlideResult(tiles, time.perf_counter() - start, times, row=row, colour=live.colour)


def check_live_features(features: torch.Tensor, slide: str, encoder: Encoder) -> None:
    """Refuse a slide whose live features hold NaN or inf: its prediction would be NaN, or silently wrong.

    Raises:
        NonFiniteFeaturesError: naming the slide, the encoder, how many tiles, and the likely cause (fp16 overflow
            on a GPU; a damaged weights file otherwise). predict.py reports it as the slide's failure.
    """
    bad = int((~torch.isfinite(features)).any(dim=1).sum()) if features.numel() else 0
    if bad:
        cause = (
            "fp16 autocast overflow: set the encoder's precision to bf16 or fp32 in its preset"
            if encoder.precision == "fp16" and features.device.type == "cuda"
            else "check the encoder's weights file (encoder_weights=)"
        )
        raise NonFiniteFeaturesError(
            f"encoder={encoder.name} returned non-finite features (NaN or inf) for {bad} of {len(features)} tiles of "
            f"slide '{slide}': no prediction was made for it; likely cause: {cause}"
        )


def slide_prediction_row(
    slide: SlideInput,
    n_tiles: int,
    columns: dict[str, np.ndarray],
    targets: Sequence[np.ndarray] | None,
    evaluated: Sequence,
) -> dict[str, Any]:
    """``slide``, ``patient``, ``n_tiles``, [truth columns], then the bag's prediction columns."""
    row: dict[str, Any] = {"slide": slide.name}
    if slide.patient is not None:
        row["patient"] = slide.patient
    row["n_tiles"] = n_tiles
    for outcome, part in zip(evaluated, targets or (), strict=True):
        row.update({column: values[0].item() for column, values in truth_columns(outcome, part).items()})
    row.update({column: float(values[0]) for column, values in columns.items()})
    return row


def prediction_title(outcomes: Sequence, columns: dict[str, np.ndarray], most: int = 3) -> str:
    """A bag's prediction in words, for a heatmap title: ``tumor_type: P(LUAD) 0.219, P(LUSC) 0.781``.

    Categorical outcomes name their classes (the ``most`` likeliest when there are more); other kinds give the
    outcome's name and value (``age 61.2``, ``os_time risk 0.41``). Outcomes are joined with ``; ``.

    Args:
        outcomes: The models' outcomes.
        columns: Prediction column → ``(1,)`` value, as :meth:`MilPredictor.predict_bag` returns them.
        most: Classes shown per categorical outcome.
    """
    parts = []
    for outcome in outcomes:
        names = outcome.output_columns()
        values = [float(np.asarray(columns[name]).reshape(-1)[0]) for name in names]
        if outcome.classes and len(outcome.classes) == len(names):
            shown = (
                sorted(range(len(names)), key=lambda i: -values[i])[:most] if len(names) > most else range(len(names))
            )
            parts.append(f"{outcome.name}: " + ", ".join(f"P({outcome.classes[i]}) {values[i]:.3f}" for i in shown))
        else:
            labels = [name.removeprefix(f"{outcome.name}-").removeprefix("y_pred") for name in names]
            parts.extend(
                f"{outcome.name}{' ' + label if label else ''} {value:.3g}"
                for label, value in zip(labels, values, strict=True)
            )
    return "; ".join(parts)
