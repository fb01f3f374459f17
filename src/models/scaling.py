"""Input scaling owned by the backbone: the per-channel mean and std that TileNet applies to uint8 tiles.

A backbone declares them as ``input_mean`` / ``input_std`` attributes (3 floats each, RGB, in [0, 1]
units); TileNet computes ``(image / 255 - input_mean) / input_std``. A backbone that declares nothing gets
:data:`DEFAULT_MEAN` / :data:`DEFAULT_STD`, which scale tiles to [-1, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

DEFAULT_MEAN = (0.5, 0.5, 0.5)
DEFAULT_STD = (0.5, 0.5, 0.5)
CONFIG_KEYS = ("model.backbone.mean", "model.backbone.std")

Triple = tuple[float, float, float]


def check_input_stats(
    mean: Sequence[float] | None, std: Sequence[float] | None, keys: tuple[str, str] = CONFIG_KEYS
) -> tuple[Triple, Triple] | None:
    """Validate a per-channel mean and std.

    Args:
        mean: Three per-channel means (R, G, B) in [0, 1] units, or ``None``.
        std: Three positive per-channel standard deviations in [0, 1] units, or ``None``.
        keys: Names of the two values in error messages (the config keys by default).

    Returns:
        ``(mean, std)`` as float tuples, or ``None`` when neither is given.

    Raises:
        ValueError: only one of them is given, one is not 3 finite numbers, or a std is not positive.
    """
    if mean is None and std is None:
        return None
    if mean is None or std is None:
        given, missing = keys if std is None else keys[::-1]
        raise ValueError(f"{given} is set but {missing} is not: give both (3 values each) or neither")
    mean_values, std_values = _three_floats(mean, keys[0]), _three_floats(std, keys[1])
    if any(s <= 0 for s in std_values):
        raise ValueError(f"{keys[1]}={list(std_values)}: every channel's std must be positive")
    return mean_values, std_values


def _three_floats(values: Sequence[float], key: str) -> Triple:
    if isinstance(values, str | bytes):
        raise ValueError(f"{key}={values!r}: expected a list of 3 numbers (R, G, B) in [0, 1] units")
    try:
        floats = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"{key}={values!r}: expected 3 numbers (R, G, B) in [0, 1] units") from None
    if len(floats) != 3 or not all(math.isfinite(v) for v in floats):
        raise ValueError(f"{key}={list(floats)!r}: expected 3 finite numbers (R, G, B) in [0, 1] units")
    return floats


def backbone_input_stats(backbone: nn.Module) -> tuple[Triple, Triple]:
    """The ``input_mean`` / ``input_std`` a backbone declares (validated), or the [-1, 1] defaults."""
    name = type(backbone).__name__
    stats = check_input_stats(
        getattr(backbone, "input_mean", None),
        getattr(backbone, "input_std", None),
        keys=(f"{name}.input_mean", f"{name}.input_std"),
    )
    return stats or (DEFAULT_MEAN, DEFAULT_STD)
