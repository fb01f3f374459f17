"""Using a trained model: predictions and heatmaps on new slides, and evaluation on a new cohort.

``predict.py`` composes ``conf/predict.yaml`` and calls :func:`run`. The model (a checkpoint, a fold, or
every fold of a run) brings its tile settings, normalizer fit, input scaling, class names and clinical
encoder; tiles are read live from the slides with extraction's own grid and filters.
"""

from src.inference.predict import run

__all__ = ["run"]
