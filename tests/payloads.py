"""Files that run code when unpickled, to show that our loaders refuse them (and that the payload is live)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch


class CreatesMarker:
    """Unpickling this object opens ``marker`` for writing, creating the file: a stand-in for any payload."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return open, (self.marker, "w")


def save_with_payload(path: Path, marker: Path, content: dict | None = None, raw_pickle: bool = False) -> Path:
    """Save ``content`` (default: a one-tensor state dict) with a :class:`CreatesMarker` among its values.

    Args:
        path: Where to write.
        marker: The file the payload creates when the saved file is unpickled.
        content: What else the file holds, e.g. a real checkpoint's dict.
        raw_pickle: Write with ``pickle.dump`` instead of ``torch.save`` (torch.load reads both).
    """
    payload = {**(content or {"weight": torch.zeros(2)}), "payload": CreatesMarker(marker)}
    if raw_pickle:
        with path.open("wb") as file:
            pickle.dump(payload, file, protocol=2)  # torch.load's own protocol
    else:
        torch.save(payload, path)
    return path
