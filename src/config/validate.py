"""Cross-field rules of a composed config, checked by every entry point before any data is read.

The schema (:mod:`src.config.schema`) types each plain key while Hydra composes. What a type cannot say is
checked here: that the balance strategies fit the first outcome's kind, that ``optimized_metric`` is a
metric the run produces, that the optimizer, scheduler and splitter can be built from their groups, the
augmentation codes, the normalizer's reference tile, the tile settings (:mod:`src.config.extraction_rules`),
and that no ``weights_path`` file holds pickled objects (only its pickle is read). No data is read, nothing
is written and no model is built, so this takes milliseconds; each error names the key, its value and what is
allowed.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from src.config.extraction_rules import validate_extraction
from src.config.predict_rules import validate_predict
from src.config.signatures import check_signatures, locate
from src.config.weights_files import check_weights_files
from src.data.augment import check_augment_config
from src.data.splits import small_classes_policy
from src.errors import ConfigError
from src.infra.processes import thread_setting
from src.losses.outcome_losses import loss_kinds
from src.models.memory_format import channels_last_setting
from src.models.scaling import check_input_stats
from src.optim.schedulers import build_scheduler
from src.outcomes import LEVELS, outcome_kind

SCHEDULER_INTERVALS = ("step", "epoch")
LOSS_METRICS = ("val/loss", "train/loss")


def validate(cfg: DictConfig, *, sweep_metric: bool = True) -> None:
    """Reject a config that cannot run, before any data is read.

    Args:
        cfg: A composed training (``conf/train.yaml``), extraction (``conf/extract.yaml``) or prediction
            (``conf/predict.yaml``: its rules are :func:`~src.config.predict_rules.validate_predict`) config.
        sweep_metric: Also check ``optimized_metric``, the value ``src.pipeline.run`` returns to a sweep
            (the Trainer API does not use it, so it passes ``False``).

    Raises:
        ConfigError: naming the key, the bad value and the allowed values.
        UnsafeFileError: a ``weights_path`` file holds pickled objects beyond tensors and plain data (naming the
            key and the file; ``src.config.weights_files``).
    """
    if "model_path" in cfg:  # the prediction config: its tile settings come from the checkpoint
        check_signatures(cfg)  # every _target_ node's keys fit its target
        validate_predict(cfg)
        return
    validate_extraction(cfg)  # tiles, the project's MPP keys and _target_ (src.config.extraction_rules: torch-free)
    if "outcomes" not in cfg:  # the extraction config: its other keys are typed by the schema
        return
    check_signatures(cfg)  # every _target_ node's keys fit its target, before anything is built
    _check_plain_keys(cfg)
    with _as_config_error():
        thread_setting(cfg.get("torch_threads", "auto"))
    with _as_config_error():
        check_augment_config(cfg.get("augment"), cfg.get("normalizer"))
    _check_normalizer_source(cfg.get("normalizer"))
    backbone = (cfg.get("model") or {}).get("backbone") or {}
    with _as_config_error():
        check_input_stats(backbone.get("mean"), backbone.get("std"))  # model.backbone.mean/std
    with _as_config_error():
        channels_last_setting(cfg.get("channels_last", "auto"), (cfg.get("trainer") or {}).get("accelerator"))
    with _as_config_error():
        kinds = loss_kinds(cfg.loss, list(cfg.outcomes))
    _check_balance(cfg, kinds)
    sample_level(cfg)
    with _as_config_error():
        check_label_columns(kinds, cfg.get("event_header"), list(cfg.get("input_header") or []))
    if sweep_metric:
        _check_optimized_metric(cfg, kinds)
    _check_optimizer_and_scheduler(cfg)
    _build(cfg.validation.get("splitter"), "validation.splitter", instantiate)
    with _as_config_error():
        small_classes_policy(cfg.validation.get("small_classes", "warn"))
    check_multirun_ddp(cfg.get("trainer") or {})
    check_weights_files(cfg)  # a pickled weights_path is refused before any tile is extracted


def check_multirun_ddp(trainer: Mapping[str, Any]) -> None:
    """Refuse DDP that Lightning would launch itself inside a Hydra multirun (``-m``) on the basic launcher.

    Lightning starts ranks 1..N-1 as copies of the command line, ``-m`` and the sweep included, so every
    copy would run the whole sweep again (lightning-hydra-template #393, Hydra #2070). Under a submitit
    launcher SLURM starts the ranks, and ``ddp_spawn``/``ddp_fork`` re-run nothing: those are allowed.

    Raises:
        ConfigError: saying what to use instead (the SLURM launcher, runs without ``-m``, or one device).
    """
    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN or "submitit" in str((hydra_cfg.launcher or {}).get("_target_", "")):
        return
    processes = _relaunched_processes(trainer)
    if processes <= 1:
        return
    raise ConfigError(
        f"trainer.strategy={_strategy_name(trainer)} with {processes} processes cannot run in a Hydra multirun (-m) "
        "with the basic launcher: Lightning starts every extra rank as a copy of this command, -m included, so "
        "each copy would run the whole sweep again. Run each job as its own SLURM job instead: add "
        "hydra/launcher=slurm_gpu (conf/hydra/launcher/: one task per GPU, tasks_per_node = gpus_per_node = "
        "trainer.devices; docs/guides/clusters.md), or run the jobs one by one without -m, or sweep with "
        "trainer.devices=1."
    )


def _strategy_name(trainer: Mapping[str, Any]) -> str:
    strategy = trainer.get("strategy")
    if isinstance(strategy, Mapping):
        return str(strategy.get("_target_", "?")).rsplit(".", 1)[-1] + (
            f"(start_method={strategy['start_method']})" if strategy.get("start_method") else ""
        )
    return str(strategy or "auto")


def _relaunched_processes(trainer: Mapping[str, Any]) -> int:
    """How many processes a DDP trainer config makes Lightning start by re-running the script (0: none)."""
    strategy = trainer.get("strategy")
    if isinstance(strategy, Mapping):
        if "DDPStrategy" not in str(strategy.get("_target_", "")):
            return 0
        if strategy.get("start_method", "popen") != "popen":  # spawn / fork: nothing is re-run
            return 0
    elif (
        not isinstance(strategy, str)
        or not strategy.startswith("ddp")
        or any(word in strategy for word in ("spawn", "fork", "notebook"))
    ):
        return 0
    devices = trainer.get("devices", 1)
    if isinstance(devices, str) and "," in devices:
        count = len([d for d in devices.split(",") if d.strip()])
    elif isinstance(devices, Sequence) and not isinstance(devices, str):
        count = len(devices)
    elif str(devices) in ("-1", "auto"):
        count = torch.cuda.device_count() if str(trainer.get("accelerator", "auto")) != "cpu" else 1
    else:
        count = int(devices)
    return count * int(trainer.get("num_nodes", 1) or 1)


def check_label_columns(kinds: dict[str, str], event_header: str | None, input_header: list[str]) -> None:
    """Reject label settings that cannot be meant, before any data is read.

    Raises:
        ConfigError: ``event_header`` while no outcome kind reads an event (it would be ignored), or a label
            column among the clinical inputs (it would leak the label into the model; Slideflow passed the
            event as ``input_header[0]``, here it is ``event_header``).
    """
    if event_header and not any(outcome_kind(kind).needs_event for kind in kinds.values()):
        raise ConfigError(
            f"event_header={event_header!r} is set but no outcome uses a loss with an event (e.g. loss=cox); "
            "use loss=cox (or drop event_header)"
        )
    leaked = [c for c in input_header if c in {*kinds, event_header}]
    if leaked:
        raise ConfigError(
            f"input_header {input_header} contains the label column(s) {leaked}: it would leak the label into "
            "the model. For survival, the event goes in event_header (not input_header[0] as in Slideflow) and "
            "the time in outcomes"
        )


def metric_names(kinds: Mapping[str, str], lowest_level: str = "tile") -> list[str]:
    """Every metric a run with validation logs: ``val/{level}_{metric}/{outcome}``, ``val/loss``, ``train/loss``.

    Args:
        kinds: Outcome -> kind, in outcome order (from ``loss_kinds``).
        lowest_level: The level of a sample: ``tile``; for MIL bags ``slide`` or ``patient``
            (``dataset.aggregation_level``), which have no level below them.
    """
    names = [
        f"val/{level}_{metric}/{outcome}"
        for outcome, kind in kinds.items()
        for level in LEVELS[LEVELS.index(lowest_level) :]
        for metric in outcome_kind(kind).metric_names
    ]
    return [*names, *LOSS_METRICS]


@contextmanager
def _as_config_error() -> Iterator[None]:
    """Re-raise a ValueError of an existing check (whose message already names the key) as a ConfigError."""
    try:
        yield
    except ConfigError:
        raise
    except ValueError as error:
        raise ConfigError(str(error)) from error


def _check_plain_keys(cfg: DictConfig) -> None:
    """Values a type allows but a run does not (the schema has already checked the types)."""
    outcomes = cfg.outcomes
    if isinstance(outcomes, str) or not outcomes:
        raise ConfigError(
            f"outcomes={outcomes!r}: name at least one annotation column, as a list, e.g. outcomes=[tumor_type]"
        )
    epochs = list(cfg.epochs) if not isinstance(cfg.epochs, int | str) and cfg.epochs else []
    if not epochs or any(not isinstance(e, int) or e < 1 for e in epochs):
        raise ConfigError(f"epochs={cfg.epochs!r} must list positive epochs, e.g. epochs=[1,3] (or epochs=[5])")
    for key, value in (("batch_size", cfg.batch_size), ("dataloader.eval_batch_size", cfg.dataloader.eval_batch_size)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key}={value!r} must be a positive number of tiles")


def _check_normalizer_source(normalizer: Mapping | None) -> None:
    source = (normalizer or {}).get("source", "dataset")
    if source != "dataset" and not Path(source).is_file():
        raise ConfigError(
            f"normalizer.source={source!r} is neither 'dataset' nor an existing image file; "
            "use normalizer.source=dataset (fit on training tiles) or the path of a reference tile"
        )


def _check_balance(cfg: DictConfig, kinds: Mapping[str, str]) -> None:
    """Both balance strategies against the first outcome's kind: that is the outcome tiles are balanced on."""
    first = next(iter(kinds))
    kind = outcome_kind(kinds[first])
    allowed = ["auto", *kind.balance_strategies]
    for key in ("training_balance", "validation_balance"):
        value = str(cfg[key])
        if value not in allowed:
            raise ConfigError(
                f"{key}={value!r} does not fit the {kind.kind} outcome {first!r} (the first of outcomes, which "
                f"tiles are balanced on); choose one of {allowed} (auto = {kind.default_balance})"
            )


def _check_optimized_metric(cfg: DictConfig, kinds: Mapping[str, str]) -> None:
    metric = str(cfg.optimized_metric)
    if str(cfg.validation.get("name")) == "none":
        allowed = [m for m in LOSS_METRICS if not m.startswith("val/")]
        if metric.startswith("val/"):
            raise ConfigError(
                f"optimized_metric={metric!r}, but validation=none produces no val/ metric; "
                f"choose one of {allowed} (e.g. optimized_metric=train/loss) or a validation strategy"
            )
    else:
        allowed = metric_names(kinds, sample_level(cfg))
    if metric not in allowed:
        raise ConfigError(f"optimized_metric={metric!r} is not a metric this run produces; choose one of {allowed}")


def sample_level(cfg: DictConfig) -> str:
    """The level of one training sample: ``tile``, or a MIL bag's ``dataset.aggregation_level``.

    Raises:
        ConfigError: an aggregation level that is not ``slide`` or ``patient``.
    """
    level = (cfg.get("dataset") or {}).get("aggregation_level")
    if level is None:
        return "tile"
    if str(level) not in LEVELS[1:]:
        raise ConfigError(f"dataset.aggregation_level={level!r}; choose one of {list(LEVELS[1:])}")
    return str(level)


def _check_optimizer_and_scheduler(cfg: DictConfig) -> None:
    """Build the optimizer on a dummy parameter, and the scheduler on that optimizer (both are thrown away)."""

    def make_optimizer(node: Any = cfg.optimizer) -> torch.optim.Optimizer:
        return instantiate(node)([torch.nn.Parameter(torch.zeros(1))])

    _build(cfg.optimizer, "optimizer", make_optimizer)
    scheduler: Any = cfg.scheduler or {}
    interval = str(scheduler.get("interval", "step"))
    if interval not in SCHEDULER_INTERVALS:
        raise ConfigError(f"scheduler.interval={interval!r}; choose one of {list(SCHEDULER_INTERVALS)}")
    if scheduler.get("fn"):
        steps = max(int(e) for e in cfg.epochs)  # any positive count: only the settings are checked
        _build(scheduler.fn, "scheduler.fn", lambda node: build_scheduler(instantiate(node), make_optimizer(), steps))


def _build(node: Any, key: str, build: Callable[[Any], Any]) -> Any:
    """``build(node)``; on failure a ConfigError naming the sub-key to blame (``optimizer.lr``) when one is.

    The sub-key to blame is one whose value is not of the type of the target's default for it, else one
    whose removal (leaving the target's default in its place) makes ``build`` succeed; when there is none
    the error names ``key`` itself.
    """
    try:
        return build(node)
    except Exception as error:
        reason = _reason(error)
        values: Any = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
        if not isinstance(values, dict) or "_target_" not in values:
            raise ConfigError(f"{key}={values!r} cannot be built ({reason}); it needs a _target_") from error
        target = values["_target_"]
        try:
            defaults = _defaults(locate(target))
        except (ImportError, AttributeError) as missing:
            raise ConfigError(f"{key}._target_={target!r} cannot be imported: {_reason(missing)}") from error
        settings = {str(k): v for k, v in values.items() if not str(k).startswith("_")}
        for name, value in settings.items():
            default = defaults.get(name)
            if default is not None and value is not None and not _same_type(value, default):
                raise ConfigError(
                    f"{key}.{name}={value!r} is rejected by {target}: expected a {_kind_of(default)} "
                    f"like the default {default!r} ({reason})"
                ) from error
        for name, value in settings.items():
            try:
                build({k: v for k, v in values.items() if k != name})
            except Exception:  # not this key
                continue
            raise ConfigError(f"{key}.{name}={value!r} is rejected by {target}: {reason}") from error
        raise ConfigError(f"{key} ({target}) cannot be built: {reason}") from error


def _reason(error: BaseException) -> str:
    """The message of the error behind Hydra's InstantiationException, on one line."""
    root = error.__cause__ or error
    return " ".join(f"{type(root).__name__}: {root}".split())


def _defaults(target: Any) -> dict[str, Any]:
    """Parameter name -> default of a callable's signature (parameters without a default left out)."""
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):  # e.g. a builtin without a signature
        return {}
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


def _kind_of(value: Any) -> str | None:
    """``number``, ``bool`` or ``string`` for a scalar (what a YAML value can be); ``None`` otherwise."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "string" if isinstance(value, str) else None


def _same_type(value: Any, default: Any) -> bool:
    """Whether ``value`` is the same kind of scalar as ``default`` (any number fits a number default)."""
    expected = _kind_of(default)
    return expected is None or _kind_of(value) == expected
