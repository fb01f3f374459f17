"""Reading ``.pth`` / ``.ckpt`` files without running code that may be pickled in them.

``torch.load(weights_only=True)`` unpickles tensors, numbers, strings, lists, dicts and a few torch types
only; a file that needs anything else (a class, a function, ``os.system``...) is refused before any of it is
built. Every file this workbench reads with torch goes through :func:`load_torch_file`.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch.torch_version import TorchVersion

from src.errors import UnsafeFileError

# torch < 2.6 has a weights-only loader that a crafted file can get around (CVE-2025-32434).
MIN_SAFE_TORCH = "2.6"


def load_torch_file(path: str | Path, mmap: bool = False) -> Any:
    """``torch.load`` a file onto the CPU with the weights-only unpickler: nothing pickled in it can run.

    Args:
        path: A state dict (``torch.save(model.state_dict(), path)``), a timm/torchvision weights file or one
            of our Lightning ``.ckpt`` files (all of which hold tensors and plain data only).
        mmap: Map the tensors' storage instead of reading it (only the file's pickle is read: a cheap check of
            a large file); a file in torch's legacy format, which cannot be mapped, is read whole.

    Returns:
        What the file holds (dicts, lists, tensors, numbers, strings).

    Raises:
        UnsafeFileError: the file holds other pickled objects (which could run code), or is no torch file at
            all; it was not loaded.
        RuntimeError: the installed torch is older than 2.6, whose weights-only loader can be bypassed.
    """
    path = Path(path)
    if TorchVersion(torch.__version__) < MIN_SAFE_TORCH:
        raise RuntimeError(
            f"Not loading {path}: torch {torch.__version__}'s weights-only loader can be bypassed by a crafted "
            f"file (CVE-2025-32434); install torch >= {MIN_SAFE_TORCH} (requirements.txt)"
        )
    try:
        if mmap:
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as error:
                if "mmap" not in str(error):  # else: the legacy format, read whole below
                    raise
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise UnsafeFileError(
            f"{path} was not loaded: it is not plain tensor data ({_refused(error)}), and unpickling it could "
            "run code it contains. Checkpoints and weights files must hold only tensors, numbers, strings, lists "
            "and dicts, e.g. torch.save(model.state_dict(), path). If you trust the file, load it yourself with "
            "torch.load(path, weights_only=False) and re-save only its state dict that way"
        ) from error


def _refused(error: pickle.UnpicklingError) -> str:
    """What the weights-only unpickler refused, in a few words (torch's message is a page long)."""
    text = str(error)
    if found := re.search(r"Unsupported global: GLOBAL (\S+)", text):
        return f"it names the Python object {found.group(1)}"
    if found := re.search(r"WeightsUnpickler error: \s*(.+)", text):
        return f"the weights-only unpickler refused it: {found.group(1).strip()}"
    return "the weights-only unpickler refused it"
