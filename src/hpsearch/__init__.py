"""Hyper-parameter search over cross-validated runs: grids and lists, and Optuna studies.

The two Hydra sweepers (``hydra_plugins/workbench_sweepers``) are thin shells around
:mod:`src.hpsearch.grid` and :mod:`src.hpsearch.study`; :mod:`src.hpsearch.sweep_info` is what a job reads
about the sweep it belongs to, and :func:`load_search` returns ``(best, history)`` for notebooks.
"""

from src.hpsearch.history import load_search

__all__ = ["load_search"]
