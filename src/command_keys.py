"""The config keys that error messages and warnings name, for the command being run.

One setting has a different key in each command: a slide's fallback MPP is ``project.mpp_override`` for
``train.py`` and ``extract.py`` but ``mpp_override=`` for ``predict.py``; the slide reader is
``dataset.backend`` or ``backend=``. Code below the commands (a slide reader, the feature encoder) names a
setting through :func:`config_key`, so its hint names a key the running command accepts; a command declares
its own keys by running inside :func:`command_keys`. Without one, the keys are train.py's (which the
extraction command and the Trainer API share).

The keys are a module-level value, not a context variable, so the reading threads of a command see them too.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

#: Setting -> its key in train.py, extract.py and the Trainer API (None: it has none).
TRAIN_KEYS: dict[str, str | None] = {
    "mpp_override": "project.mpp_override",
    "mpp_column": "project.mpp_column",
    "backend": "dataset.backend",
    "encoder_weights": "encoder.weights_path",
    "allowed_targets": None,  # only load_model's argument
    "allowed_kinds": None,
}

#: The same settings in predict.py (``conf/predict.yaml``).
PREDICT_KEYS: dict[str, str | None] = {
    "mpp_override": "mpp_override",
    "mpp_column": None,  # predict.py takes no per-slide MPP column
    "backend": "backend",
    "encoder_weights": "encoder_weights",
    "allowed_targets": "allowed_targets",
    "allowed_kinds": "allowed_kinds",
}

_keys: Mapping[str, str | None] = TRAIN_KEYS


def config_key(setting: str) -> str | None:
    """The running command's key for ``setting`` (one of :data:`TRAIN_KEYS`), or None when it has none.

    Raises:
        KeyError: ``setting`` is not a setting listed here (a typo in a message would go unnoticed otherwise).
    """
    if setting not in TRAIN_KEYS:
        raise KeyError(f"{setting!r} is not one of {sorted(TRAIN_KEYS)}")
    return _keys.get(setting)


@contextmanager
def command_keys(keys: Mapping[str, str | None]) -> Iterator[None]:
    """Name settings by ``keys`` (e.g. :data:`PREDICT_KEYS`) inside the block; the previous keys after it."""
    global _keys
    previous, _keys = _keys, keys
    try:
        yield
    finally:
        _keys = previous
