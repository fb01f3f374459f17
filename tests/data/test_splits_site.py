"""k_fold_site: the site assignment is optimal for Slideflow's objective, and balanced on the demo project."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from src.config import compose
from src.data.splits import KFoldSite, assign_sites, site_objective
from src.data.splits.site import _branch_and_bound, _greedy
from src.demo.generate import make_annotations


def brute_force(counts: np.ndarray, k: int) -> int:
    """The minimum of Σ_label Σ_fold (k·n_label,fold − n_label)² over every assignment with no empty fold."""
    totals = counts.sum(axis=0)
    best = None
    for assignment in itertools.product(range(k), repeat=len(counts)):
        if len(set(assignment)) < k:
            continue
        cost = 0
        for fold in range(k):
            n = sum(counts[s] for s in range(len(counts)) if assignment[s] == fold)
            cost += int(sum((k * n[label] - totals[label]) ** 2 for label in range(counts.shape[1])))
        best = cost if best is None else min(best, cost)
    return best


@pytest.mark.parametrize("seed", range(6))
def test_assignment_is_optimal(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 4))
    counts = rng.integers(0, 12, size=(int(rng.integers(k, 8)), int(rng.integers(1, 4))))
    best = brute_force(counts, k)
    assignment, method = assign_sites(counts, k, seed)
    assert method == "exact"
    assert sorted(set(assignment.tolist())) == list(range(k))
    assert site_objective(counts, assignment, k) == best
    # The search used for many sites reaches the same optimum from the greedy start.
    searched, proven = _branch_and_bound(counts, k, _greedy(counts, k, rng), time_limit=30)
    assert proven and site_objective(counts, searched, k) == best
    assert site_objective(counts, _greedy(counts, k, rng), k) >= best


def test_many_sites_use_the_time_limited_search() -> None:
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 30, size=(40, 3))
    assignment, method = assign_sites(counts, 5, seed=0, time_limit=0.5)
    assert method in ("exact", "search")
    assert sorted(set(assignment.tolist())) == list(range(5))
    # far better than a random assignment
    random_costs = [site_objective(counts, rng.permutation(np.arange(40) % 5), 5) for _ in range(20)]
    assert site_objective(counts, assignment, 5) < min(random_costs) / 3


def demo_site_table(k: int) -> pd.DataFrame:
    """Per-fold share of each tumour type under k_fold_site on the demo annotations, and the overall share."""
    cfg = compose()
    demo = cfg.project.demo
    table = make_annotations(seed=int(demo.seed), n_patients=int(demo.n_patients))
    folds = KFoldSite(k=k).split(table, ["tumor_type"], seed=int(cfg.seed))
    label = table.drop_duplicates("patient").set_index("patient")["tumor_type"]
    rows = [{"fold": "all", "sites": "all", "patients": len(label), **label.value_counts(normalize=True)}]
    for fold in folds:
        values = label[fold.val_patients]
        rows.append(
            {
                "fold": fold.name,
                "sites": "+".join(fold.info["sites"]),
                "patients": len(values),
                **values.value_counts(normalize=True),
            }
        )
    return pd.DataFrame(rows).fillna(0.0)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_demo_site_folds_keep_class_proportions(k: int) -> None:
    table = demo_site_table(k)
    print(f"\nk_fold_site (k={k}) on the demo annotations:\n{table.round(3).to_string(index=False)}")
    overall = table.iloc[0]
    assert len(table) == k + 1 and table.sites.iloc[1:].str.split("+").map(len).sum() == 4
    for _, fold in table.iloc[1:].iterrows():
        for label in ("adenocarcinoma", "squamous"):
            assert abs(fold[label] - overall[label]) <= 0.10, (fold.fold, label, fold[label], overall[label])
