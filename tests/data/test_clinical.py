"""Clinical inputs: numeric columns standardised with training statistics only, categorical columns one-hot,
unseen categories and mixed columns rejected, blank values dropped (counted) or an error."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from src.data.annotations import AnnotationError
from src.data.clinical import ClinicalEncoder, drop_blank_clinical
from src.data.dataset import Dataset


def _table(n: int = 12, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "patient": [f"p{i}" for i in range(n)],
            "slide": [f"s{i}" for i in range(n)],
            "tumor_type": ["a", "b"] * (n // 2),
            "age": rng.integers(40, 86, n),
            "stage": [("I", "II", "III")[i % 3] for i in range(n)],
        }
    )


def test_numeric_standardised_with_training_statistics_and_categorical_one_hot() -> None:
    table = _table()
    train, val = table.iloc[:8], table.iloc[8:]
    encoder = ClinicalEncoder.fit(train, ["age", "stage"])
    mean, sd = encoder.numeric["age"]
    assert mean == pytest.approx(train.age.mean()) and sd == pytest.approx(train.age.std(ddof=0))
    assert encoder.categories["stage"] == sorted(train.stage.unique())
    encoded = encoder.transform(val)
    assert encoded.shape == (len(val), encoder.width) == (len(val), 1 + len(encoder.categories["stage"]))
    np.testing.assert_allclose(encoded[:, 0], (val.age - train.age.mean()) / train.age.std(ddof=0), rtol=1e-6)
    categories = encoder.categories["stage"]
    np.testing.assert_array_equal(encoded[:, 1:], np.array([[c == s for c in categories] for s in val.stage], float))
    again = ClinicalEncoder.from_dict(encoder.to_dict())
    np.testing.assert_array_equal(again.transform(val), encoded)


def test_unseen_category_at_validation_is_an_error() -> None:
    table = _table()
    encoder = ClinicalEncoder.fit(table.iloc[:8], ["stage"])
    val = table.iloc[8:].copy()
    val.loc[val.index[1], "stage"] = "IV"
    with pytest.raises(AnnotationError, match=rf"'stage': slide '{val.slide.iloc[1]}' has category 'IV' not seen"):
        encoder.transform(val)


def test_text_in_a_numeric_clinical_column_is_an_error() -> None:
    table = _table()
    table["age"] = table["age"].astype(object)
    table.loc[5, "age"] = "unknown"
    with pytest.raises(AnnotationError, match=r"'age' mixes numbers and text: slide 's5' has 'unknown'"):
        ClinicalEncoder.fit(table, ["age"])
    encoder = ClinicalEncoder.fit(_table(), ["age"])
    with pytest.raises(AnnotationError, match=r"'age' is numeric, but slide 's5' has 'unknown'"):
        encoder.transform(table)


@pytest.mark.parametrize("policy", ["drop", "error"])
def test_blank_clinical_values(policy: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    table = _table()
    table.loc[[1, 9], "age"] = np.nan
    table.loc[2, "stage"] = " "
    dataset = Dataset(table)
    train, val = (
        dataset.filter({"slide": table.slide[:8].tolist()}),
        dataset.filter({"slide": table.slide[8:].tolist()}),
    )
    columns = ["age", "stage"]
    if policy == "error":
        with pytest.raises(ValueError, match=r"2 fold1 training slide\(s\) have blank clinical inputs.*\['s1', 's2'\]"):
            drop_blank_clinical(train, columns, policy, "fold1 training")
        return
    with caplog.at_level(logging.WARNING):
        kept_train = drop_blank_clinical(train, columns, policy, "fold1 training")
        kept_val = drop_blank_clinical(val, columns, policy, "fold1 validation")
    encoder = ClinicalEncoder.fit(kept_train.annotations, columns)
    assert kept_train.slides() == ["s0", *[f"s{i}" for i in range(3, 8)]]
    assert kept_val.slides() == ["s8", "s10", "s11"]
    assert "Dropped 2 fold1 training slide(s)" in caplog.text and "Dropped 1 fold1 validation slide(s)" in caplog.text
    assert encoder.numeric["age"][0] == pytest.approx(kept_train.annotations.age.mean())
