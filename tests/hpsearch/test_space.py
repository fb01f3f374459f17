"""Search spaces without training: the presets sampled 200 times, range semantics, direction, fixed keys."""

from __future__ import annotations

import math

import optuna
import pytest
from omegaconf import OmegaConf

from src.config import CONFIG_DIR, compose
from src.hpsearch.objective import FoldValues, infer_direction
from src.hpsearch.space import SearchSpaceError, distribution, grid_choices, suggest_space

optuna.logging.set_verbosity(optuna.logging.WARNING)

# Slideflow's util/smac_utils.py presets (the parity target), in our keys
SLIDEFLOW = {
    "shallow": {
        "batch_size": {8, 16, 32, 64},
        "model.dropout": (0.0, 0.3),
        "optimizer.weight_decay": (0.0, 0.3),
        "optimizer.lr": (5e-5, 5e-4),
        "model.hidden_layers": {0, 1, 2},
    },
    "broad": {
        "batch_size": {8, 16, 32, 64},
        "model.dropout": (0.0, 0.5),
        "l1": (0.0, 0.5),
        "optimizer.weight_decay": (0.0, 0.5),
        "optimizer.lr": (1e-5, 1e-3),
        "scheduler.fn.decay": (0.95, 1.0),
        "scheduler.fn.decay_steps": (128, 1024),
        "model.hidden_layers": {0, 1, 2, 3},
        "model.hidden_layer_width": {64, 128, 256, 512},
    },
}
CONDITIONAL = {"model.hidden_layer_width", "scheduler.fn.decay_steps"}
# Keys whose range is wider than Slideflow's (it must hold every model preset's own value, see below)
WIDENED = {"optimizer.lr"}
MODELS = sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml"))
SPACES = sorted(p.stem for p in (CONFIG_DIR / "hparams_search").glob("*.yaml") if p.stem != "grid_example")
LR_OPTIONS = sorted(p.stem for p in (CONFIG_DIR / "lr").glob("*.yaml"))


def _sample(cfg, n: int, sampler=None) -> list[dict]:
    study = optuna.create_study(sampler=sampler or optuna.samplers.RandomSampler(seed=0), direction="maximize")
    drawn = []
    for i in range(n):
        trial = study.ask()
        suggest_space(cfg, trial)
        drawn.append(dict(trial.params))
        study.tell(trial, float(i % 7))
    return drawn


@pytest.mark.parametrize("preset", sorted(SLIDEFLOW))
def test_preset_space_stays_in_slideflow_ranges_and_obeys_conditions(preset: str) -> None:
    cfg = compose([f"hparams_search={preset}"])
    drawn = _sample(cfg, 200)
    expected = dict(SLIDEFLOW[preset])
    for key in WIDENED:  # the preset's own range, which must hold Slideflow's
        own = _interval(cfg, key)
        assert own[0] <= expected[key][0] and expected[key][1] <= own[1], (key, own, expected[key])
        expected[key] = own
    for params in drawn:
        assert set(params) - CONDITIONAL == set(expected) - CONDITIONAL
        for key, value in params.items():
            allowed = expected[key]
            if isinstance(allowed, set):
                assert value in allowed, (key, value)
            else:
                assert allowed[0] <= value <= allowed[1], (key, value)
        if preset == "broad":  # Slideflow's conditions
            assert ("model.hidden_layer_width" in params) == (params["model.hidden_layers"] > 0)
            assert ("scheduler.fn.decay_steps" in params) == (params["scheduler.fn.decay"] < 1)
            if "scheduler.fn.decay_steps" in params:
                assert isinstance(params["scheduler.fn.decay_steps"], int)
    lrs = [p["optimizer.lr"] for p in drawn]  # log scale: about half the draws below the geometric midpoint
    low, high = expected["optimizer.lr"]
    assert 0.35 < sum(lr < math.sqrt(low * high) for lr in lrs) / len(lrs) < 0.65
    assert {p["batch_size"] for p in drawn} == expected["batch_size"]


def test_entries_switch_off_change_and_fix_from_the_command_line() -> None:
    cfg = compose(
        [
            "hparams_search=broad",
            "hparams_search.space.l1=null",
            "hparams_search.space.batch_size.values='choice(16,32)'",
        ]
    )
    study = optuna.create_study()
    trial = study.ask()
    trial.set_user_attr("optimizer.lr", "1e-4")  # what the sweeper does with `optimizer.lr=1e-4`
    suggest_space(cfg, trial)
    assert "l1" not in trial.params and "optimizer.lr" not in trial.params
    assert trial.params["batch_size"] in (16, 32)


def test_range_excludes_its_stop_under_tpe_random_and_grid() -> None:
    dist = distribution("y", "range(1,4)")
    assert grid_choices(dist) == list(range(1, 4))
    for sampler in (optuna.samplers.TPESampler(seed=0, n_startup_trials=5), optuna.samplers.RandomSampler(seed=0)):
        study = optuna.create_study(sampler=sampler)
        values = set()
        for _ in range(60):
            trial = study.ask()
            values.add(trial._suggest("y", dist))
            study.tell(trial, 1.0)
        assert values == {1, 2, 3}
    assert grid_choices(distribution("y", "range(0,10,3)")) == list(range(0, 10, 3))
    assert grid_choices(distribution("x", "range(0.0,1.0,0.25)")) == [0.0, 0.25, 0.5, 0.75]
    assert grid_choices(distribution("y", "int(interval(1,4))")) == [1, 2, 3, 4]  # an interval is closed
    with pytest.raises(SearchSpaceError, match="single value"):
        distribution("y", "3")


def test_direction_follows_the_metric() -> None:
    assert infer_direction("val/slide_auroc/tumor_type") == "maximize"
    assert infer_direction("val/slide_c_index/os_time") == "maximize"
    assert infer_direction("val/slide_r2/tumor_cellularity") == "maximize"
    assert infer_direction("val/loss") == "minimize"
    assert infer_direction("train/loss") == "minimize"
    assert infer_direction("val/slide_mae/tumor_cellularity") == "minimize"
    assert infer_direction("val/loss", "maximize") == "maximize"
    with pytest.raises(ValueError, match=r"hparams_search\.direction"):
        infer_direction("val/loss", "up")


def test_mean_minus_sd_penalises_the_fold_spread() -> None:
    values = FoldValues("m", {"fold1": 0.6, "fold2": 0.8, "fold3": 0.7})
    sd = float(__import__("numpy").std([0.6, 0.8, 0.7], ddof=1))
    assert values.objective("mean", "maximize") == pytest.approx(0.7)
    assert values.objective("mean_minus_sd", "maximize") == pytest.approx(0.7 - sd)
    assert values.objective("mean_minus_sd", "minimize") == pytest.approx(0.7 + sd)
    assert "fold2" in FoldValues("m", {"fold1": 0.5, "fold2": float("nan")}).nan_reason()


def test_the_cox_space_draws_epoch_lists_that_compose_and_validate() -> None:
    from src.config.validate import validate

    cfg = compose(["experiment=demo_cox", "hparams_search=cox"])
    drawn = _sample(cfg, 30)
    seen = set()
    for params in drawn[:6]:
        job = compose(["experiment=demo_cox", *(f"{key}={value}" for key, value in params.items())])
        validate(job)  # a quoted list ('[4]') becomes the job's epochs list
        assert list(job.epochs) == yaml_list(params["epochs"])
        assert job.training_balance == params["training_balance"]
        assert job.optimizer.lr == pytest.approx(params["optimizer.lr"])
    for params in drawn:
        seen.add(params["epochs"])
        assert 1e-4 <= params["optimizer.lr"] <= 1e-2
    assert seen == {"[2]", "[4]", "[8]"}


def yaml_list(text: str) -> list[int]:
    """``'[4]'`` → ``[4]``."""
    return [int(v) for v in text.strip("[]").split(",")]


def _interval(cfg, key: str) -> tuple[float, float]:
    """The (low, high) of the space entry searching ``key``."""
    (entry,) = [e for e in cfg.hparams_search.space.values() if e is not None and e.key == key]
    dist = distribution(key, entry["values"])
    return dist.low, dist.high


def _situation(cfg) -> str:
    """What the model's config says it trains: a head on feature bags, or a backbone from scratch or pretrained."""
    backbone = cfg.model.get("backbone")
    if backbone is None:
        return "mil"
    return "fine_tuning" if backbone.get("pretrained") or backbone.get("weights_path") else "from_scratch"


@pytest.fixture(scope="module")
def composed() -> dict[str, object]:
    """Every model preset and every search space, composed once (one Hydra initialisation)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from src.config import register_configs

    register_configs()
    runs = {f"model={m}": [f"model={m}"] for m in MODELS}
    runs |= {f"hparams_search={s}": [f"hparams_search={s}"] for s in SPACES}
    runs["lr=fine_tuning"] = ["model=tiny", "lr=fine_tuning"]  # tiny's own is from_scratch
    runs["lr=fine_tuning optimizer.lr=3e-4"] = ["model=tiny", "lr=fine_tuning", "optimizer.lr=3e-4"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return {name: hydra_compose(config_name="train", overrides=overrides) for name, overrides in runs.items()}


def test_every_model_presets_lr_is_inside_every_space_that_can_tune_it(composed: dict) -> None:
    rates = {name: float(OmegaConf.load(CONFIG_DIR / "lr" / f"{name}.yaml").lr) for name in LR_OPTIONS}
    missing = object()
    tuned = set()
    for space in SPACES:
        space_cfg = composed[f"hparams_search={space}"]
        low, high = _interval(space_cfg, "optimizer.lr")
        keys = [str(e.key) for e in space_cfg.hparams_search.space.values() if e is not None]
        for model in MODELS:
            model_cfg = composed[f"model={model}"]
            # a model key must be in the model's preset, any other key in the config the space composes
            if any(
                OmegaConf.select(model_cfg if k.startswith("model.") else space_cfg, k, default=missing) is missing
                for k in keys
            ):
                continue  # e.g. shallow's model.hidden_layers: a MIL model has none, the space cannot tune it
            tuned.add(space)
            own = model_cfg.optimizer.lr
            assert low <= own <= high, (space, model, own, (low, high))
            if _situation(model_cfg) != "mil":  # a tile model may be trained from scratch or fine-tuned
                for option in ("from_scratch", "fine_tuning"):
                    assert low <= rates[option] <= high, (space, model, option, (low, high))
    assert tuned == set(SPACES)  # every shipped space tunes some model


def test_each_model_preset_gets_the_lr_of_its_situation_and_from_scratch_is_the_highest(composed: dict) -> None:
    rates = {name: float(OmegaConf.load(CONFIG_DIR / "lr" / f"{name}.yaml").lr) for name in LR_OPTIONS}
    seen = set()
    for model in MODELS:
        cfg = composed[f"model={model}"]
        situation = _situation(cfg)
        seen.add(situation)
        assert cfg.optimizer.lr == rates[situation], (model, situation)
    assert {"from_scratch", "mil"} <= seen
    assert rates["from_scratch"] > rates["fine_tuning"]  # random weights need larger steps than pretrained ones
    assert rates["from_scratch"] == max(rates.values())
    # `lr=<situation>` switches a preset's rate; optimizer.lr= still sets a number
    assert composed["lr=fine_tuning"].optimizer.lr == rates["fine_tuning"]
    assert composed["lr=fine_tuning optimizer.lr=3e-4"].optimizer.lr == 3e-4
