"""The typed schema: a plain key of the wrong type fails while composing, naming the key, before any tile
is extracted; choices stay plain strings wherever a config is written out."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from src.commands.extract import SLIDE_CHOICES
from src.config import REPO_ROOT, compose
from src.config.schema import (
    Balance,
    ClinicalBlank,
    ExtractConfig,
    OnSlideError,
    OutcomeBlank,
    SlideChoice,
    TrainConfig,
)
from src.data.dataset import OUTCOME_BLANK
from src.outcomes import available_kinds, outcome_kind
from src.project import SLIDE_ERROR_POLICIES

# override -> what the error must say (the key, and the value or what is allowed)
BAD_TYPES = {
    "batch_size=abc": r"Value 'abc' of type 'str' could not be converted to Integer\s+full_key: batch_size",
    "epochs=5": r"int is not a ListConfig, list or tuple.\s+full_key: epochs",
    "outcomes=tumor_type": r"str is not a ListConfig, list or tuple.\s+full_key: outcomes",
    "clinical_blank=erorr": r"Invalid value 'erorr', expected one of \[drop, error\]\s+full_key: clinical_blank",
    "outcome_blank=keep": r"Invalid value 'keep', expected one of \[drop, error\]\s+full_key: outcome_blank",
    "on_slide_error=maybe": r"Invalid value 'maybe', expected one of \[stop, skip\]\s+full_key: on_slide_error",
    "training_balance=evnt": r"Invalid value 'evnt', expected one of \[auto, .*\]\s+full_key: training_balance",
    "seed=x": r"full_key: seed",
    "l1=abc": r"full_key: l1",
    "dataloader.num_workers=two": r"full_key: dataloader.num_workers",
}


@pytest.mark.parametrize("override", list(BAD_TYPES))
def test_a_wrong_type_fails_at_composition_naming_the_key(override: str, tiny_cfg, tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    with pytest.raises(ConfigCompositionException, match=BAD_TYPES[override]):
        tiny_cfg(f"project.shards_dir={shards}", override)
    assert not shards.exists(), "tiles were extracted before the bad config was caught"


def test_train_py_reports_the_key_and_extracts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """train.py's own command line, run in this process (Hydra's main, as a user starts it)."""
    data, outputs = tmp_path / "data", tmp_path / "outputs"
    argv = ["train.py", "batch_size=abc", f"paths.data_dir={data}", f"paths.output_dir={outputs}"]
    monkeypatch.setattr(sys, "argv", [*argv, "hydra/job_logging=none", "hydra/hydra_logging=none"])
    with pytest.raises(SystemExit) as exit_status:  # Hydra prints the error and exits with status 1
        runpy.run_path(str(REPO_ROOT / "train.py"), run_name="__main__")
    assert exit_status.value.code != 0
    err = capsys.readouterr().err
    assert "full_key: batch_size" in err and "'abc'" in err, err[-2000:]
    assert not data.exists(), "the project was generated or extracted before the bad config was caught"


def test_the_extraction_config_is_typed() -> None:
    assert OmegaConf.get_type(compose([], config_name="extract")) is ExtractConfig
    with pytest.raises(ConfigCompositionException, match=r"expected one of \[annotated, all\]\s+full_key: slides"):
        compose(["slides=bogus"], config_name="extract")
    with pytest.raises(ConfigCompositionException, match=r"full_key: workers"):
        compose(["workers=many"], config_name="extract")


def test_unknown_keys_stay_rejected() -> None:
    for override in ("batch_sise=8", "paths.data_dri=/tmp", "dataloader.workers=2", "optimizer.learning_rate=0.1"):
        with pytest.raises(ConfigCompositionException, match="Could not override"):
            compose([override])


def test_choices_are_plain_strings_wherever_a_config_is_written() -> None:
    cfg = compose([])
    assert OmegaConf.get_type(cfg) is TrainConfig
    assert cfg.training_balance == "auto" and f"{cfg.validation_balance}" == "none"
    assert str(cfg.clinical_blank) == "drop" and str(cfg.outcome_blank) == "drop"
    assert "training_balance: auto\n" in OmegaConf.to_yaml(cfg, resolve=True)  # run folder config.yaml
    plain = OmegaConf.to_container(cfg, resolve=True)
    params = json.loads(json.dumps(plain, default=str))  # params.json and checkpoints
    assert params["training_balance"] == "auto" and params["clinical_blank"] == "drop"
    strings = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    assert type(strings["training_balance"]) is str


def test_choices_match_the_code_that_uses_them() -> None:
    every_kind = {s for k in available_kinds() for s in outcome_kind(k).balance_strategies}
    assert {b.value for b in Balance} == {"auto", *every_kind}
    assert [c.value for c in SlideChoice] == list(SLIDE_CHOICES)
    assert {c.value for c in ClinicalBlank} == {"drop", "error"}
    assert [c.value for c in OutcomeBlank] == list(OUTCOME_BLANK)
    assert [c.value for c in OnSlideError] == list(SLIDE_ERROR_POLICIES)


def test_the_prediction_config_is_typed_and_checked() -> None:
    from src.config.schema import PredictConfig
    from src.config.validate import validate
    from src.errors import ConfigError

    cfg = compose(["model_path=x", "slides=y"], config_name="predict")
    assert OmegaConf.get_type(cfg) is PredictConfig
    with pytest.raises(ConfigCompositionException, match="stride_div"):
        compose(["model_path=x", "slides=y", "stride_div=half"], config_name="predict")
    with pytest.raises(ConfigCompositionException):
        compose(["model_path=x", "slides=y", "heatmap=false"], config_name="predict")  # typo of heatmaps
    with pytest.raises(ConfigError, match="model_path='x' does not exist"):
        validate(cfg)
