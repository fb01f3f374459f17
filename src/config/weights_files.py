"""Weights files named in a config (``model.backbone.weights_path``, ``encoder.weights_path``) checked up front.

A file with pickled objects beyond tensors and plain data is refused when the model or encoder is built,
which is after the splits and tiles; :func:`check_weights_files` refuses it in ``validate`` instead, before
any tile is extracted. Only the file's pickle is read (its tensors are memory-mapped, not loaded), so a
large weights file costs milliseconds. A file that does not exist is left to the code that loads it (an
encoder says where to put its weights).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig

from src.errors import ConfigError, UnsafeFileError
from src.models.weights_file import load_torch_file

WEIGHTS_KEY = "weights_path"


def check_weights_files(cfg: DictConfig) -> None:
    """Read the pickle of every existing file a ``weights_path`` key of ``cfg`` names, with the weights-only loader.

    Raises:
        UnsafeFileError: a file holds pickled objects beyond tensors and plain data; the message names the key
            and the file. Nothing from it was run.
        ConfigError: a file that is no torch file (it cannot be read), naming the key and the file.
    """
    checked: set[Path] = set()
    for key, value in weights_paths(cfg):
        path = Path(str(value)).expanduser()
        if path in checked or not path.is_file():
            continue
        checked.add(path)
        try:
            load_torch_file(path, mmap=True)
        except UnsafeFileError as error:
            raise UnsafeFileError(f"{key}={path}: refused before any tile is extracted. {error}") from error
        except Exception as error:
            raise ConfigError(
                f"{key}={path} cannot be read as a torch weights file ({type(error).__name__}: {error}); point "
                f"{key} at a state dict saved with torch.save, or set it to null"
            ) from error


def weights_paths(node: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """``(dotted key, value)`` of every ``weights_path`` key under ``node`` that is set (interpolations resolved)."""
    if isinstance(node, DictConfig):
        items = [(f"{prefix}.{k!s}" if prefix else str(k), k) for k in node]
    elif isinstance(node, ListConfig):
        items = [(f"{prefix}[{i}]", i) for i in range(len(node))]
    else:
        return
    for dotted, index in items:
        try:
            value = node[index]
        except Exception:  # an interpolation that cannot resolve here: other checks name it
            continue
        if index == WEIGHTS_KEY and isinstance(value, str) and value:
            yield dotted, value
        elif isinstance(value, DictConfig | ListConfig):
            yield from weights_paths(value, dotted)
