"""Patient-level validation strategies, the splits cache and ``splits.json``.

One module per concern: ``folds`` (Fold, patient table, splitter interface), ``kfold`` (``k_fold``,
``k_fold_manual``), ``site`` (``k_fold_site``), ``holdout`` (``fixed``, ``bootstrap``, ``none``), ``external``,
``plan`` (cache, forced splits, ``splits.json``) and ``classes`` (classes too small for the folds).
"""

from src.data.splits.classes import SMALL_CLASSES, ClassGap, check_class_sizes, small_classes_policy
from src.data.splits.external import External, study_slides
from src.data.splits.folds import Fold, Splitter, check_folds, patient_table, patient_values, select_folds
from src.data.splits.holdout import Bootstrap, Fixed, NoValidation
from src.data.splits.kfold import KFold, KFoldManual
from src.data.splits.plan import SplitPlan, cache_key, load_splits, plan_splits
from src.data.splits.site import KFoldSite, assign_sites, site_objective

__all__ = [
    "SMALL_CLASSES",
    "Bootstrap",
    "ClassGap",
    "External",
    "Fixed",
    "Fold",
    "KFold",
    "KFoldManual",
    "KFoldSite",
    "NoValidation",
    "SplitPlan",
    "Splitter",
    "assign_sites",
    "cache_key",
    "check_class_sizes",
    "check_folds",
    "load_splits",
    "patient_table",
    "patient_values",
    "plan_splits",
    "select_folds",
    "site_objective",
    "small_classes_policy",
    "study_slides",
]
