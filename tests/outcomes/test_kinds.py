"""Outcome kinds: nothing outside src/outcomes branches on the kind, and a new kind is one module."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from src.config import REPO_ROOT
from src.errors import ConfigError
from src.outcomes import available_kinds, outcome_from_dict, outcome_kind
from src.pipeline import run
from src.training.checkpoint import load_model

KIND_NAMES = "|".join(available_kinds())
# a comparison with a kind, a membership test against a literal collection, or a kind's name as a string
BRANCHING = re.compile(rf"""kind\s*(==|!=)|\bkind\s+(not\s+)?in\s*[(\[{{]|["']({KIND_NAMES})["']""")


def test_nothing_outside_the_outcomes_package_branches_on_the_kind() -> None:
    offenders = []
    for path in sorted((REPO_ROOT / "src").rglob("*.py")):
        if path.parent.name == "outcomes":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if BRANCHING.search(code):
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}")
    assert not offenders, "kind-specific code outside src/outcomes:\n" + "\n".join(offenders)


def test_shipped_kinds_and_a_clear_error_for_an_unknown_one() -> None:
    assert {"categorical", "linear", "cox"} <= set(available_kinds())
    assert outcome_kind("cox").n_targets == 2
    with pytest.raises(ConfigError, match=r"Unknown outcome kind 'ordinal'.*\['categorical', 'cox', 'linear'\]"):
        outcome_kind("ordinal")


def test_a_kind_from_a_module_outside_src_trains_end_to_end(tiny_cfg, tmp_path: Path) -> None:
    """``loss.kind=tests.outcomes.bounded_kind``: one module, no other file touched."""
    run(tiny_cfg("experiment=demo_linear", "loss.kind=tests.outcomes.bounded_kind", "validation.folds=[1]"))
    (fold,) = (tmp_path / "outputs" / "runs").glob("*/fold1")
    tiles = pd.read_parquet(fold / "predictions" / "tile_val_epoch1.parquet")
    manifest = pd.read_csv(fold / "slide_manifest.csv")
    training = manifest[manifest.dataset == "training"].outcome_label.astype(float)
    predictions = tiles["tumor_cellularity-y_pred"]
    assert training.min() - 1e-5 <= predictions.min() and predictions.max() <= training.max() + 1e-5
    model = load_model(fold / "checkpoints" / "epoch1.ckpt", allowed_kinds=["tests.outcomes.bounded_kind"])
    assert type(model.outcomes[0]).__name__ == "BoundedOutcome"
    assert outcome_from_dict(model.outcomes[0].to_dict()).kind_spec() == "tests.outcomes.bounded_kind"
