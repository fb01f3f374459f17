"""Whether a feature bag can be trusted: a SHA-256 of its features, finite values, attributes of the right type.

Every bag stores ``features_sha256``, the SHA-256 of its ``features`` dataset's bytes (C order, the stored
dtype). A bag is verified the first time a process uses it (:func:`bag_damage`: checksum, finite values, row
count), then remembered by its path, inode, size and modification time, so epochs and folds never read it
again for that. A bag written before checksums existed (no ``features_sha256``) is verified for finite values
and, by the process that may write (the one extracting bags), given its checksum: the file is rewritten
through a temporary file with the attribute added, its features untouched, so no bag is re-encoded for it.

Attributes read from a bag are plain data: each is checked to be of the expected type before it is used.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from src.infra.files import write_bytes_atomic

log = logging.getLogger(__name__)

CHECKSUM_ATTR = "features_sha256"
BLOCK_ROWS = 4096  # rows read at a time when verifying (bounded memory for bags of any size)
VERIFY_THREADS = 4  # bags verified at a time (SHA-256 and NumPy release the GIL; reads are serialised by h5py)
FLOAT16_MAX = float(np.finfo(np.float16).max)
_SHA256 = re.compile(r"[0-9a-f]{64}")

_SOUND: set[tuple[str, int, int, int]] = set()  # bags this process verified: (path, inode, size, mtime_ns)


class DamagedBagError(RuntimeError):
    """A feature bag that cannot be used (checksum mismatch, non-finite features, unreadable), naming it."""


class NonFiniteFeaturesError(RuntimeError):
    """The encoder returned NaN or inf features for some tiles of a slide (no bag is written)."""


def attr_int(attrs: Any, key: str) -> int:
    """Attribute ``key`` as an int; raises ValueError unless it is a stored integer."""
    value = attrs[key]
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise ValueError(f"attribute {key} is {type(value).__name__}, not an integer")
    return int(value)


def attr_str(attrs: Any, key: str) -> str:
    """Attribute ``key`` as a str; raises ValueError unless it is a stored string."""
    value = attrs[key]
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode("utf-8")
    if not isinstance(value, str):
        raise ValueError(f"attribute {key} is {type(value).__name__}, not a string")
    return value


def stored_checksum(attrs: Any) -> str | None:
    """The bag's ``features_sha256`` (None: an older bag without one); raises ValueError if it is malformed."""
    if CHECKSUM_ATTR not in attrs:
        return None
    value = attr_str(attrs, CHECKSUM_ATTR)
    if not _SHA256.fullmatch(value):
        raise ValueError(f"attribute {CHECKSUM_ATTR} is not a SHA-256 hex digest")
    return value


def features_sha256(features: np.ndarray) -> str:
    """SHA-256 of a features array's bytes in C order (what ``features_sha256`` stores)."""
    return hashlib.sha256(_raw(features)).hexdigest()


_EXPONENT = {np.dtype(np.float16): (np.uint16, 0x7C00), np.dtype(np.float32): (np.uint32, 0x7F800000)}


def non_finite_rows(features: np.ndarray) -> int:
    """How many rows (tiles) of ``features`` hold a NaN or an infinite value.

    For float16 and float32 a value is NaN or inf exactly when its exponent bits are all set: testing the bits
    is ~2× faster than ``np.isfinite`` on float16, and the rows are counted only when there is one.
    """
    if not features.size:
        return 0
    features = np.ascontiguousarray(features)
    if features.dtype in _EXPONENT:
        unsigned, exponent = _EXPONENT[features.dtype]
        bad = (features.view(unsigned) & exponent) == exponent
    else:
        bad = ~np.isfinite(features)
    if not bad.any():
        return 0
    return int(bad.reshape(len(features), -1).any(axis=1).sum())


def scan_features(dataset: h5py.Dataset) -> tuple[str, int]:
    """SHA-256 and non-finite row count of a stored ``features`` dataset, read ``BLOCK_ROWS`` rows at a time."""
    digest, bad = hashlib.sha256(), 0
    for start in range(0, dataset.shape[0], BLOCK_ROWS):
        block = dataset[start : start + BLOCK_ROWS]
        digest.update(_raw(block))
        bad += non_finite_rows(block)
    return digest.hexdigest(), bad


def check_finite_features(
    features: np.ndarray, stored: np.ndarray, slide: str, encoder: str, precision: str, dtype: str
) -> None:
    """Raise when the encoder's features (or their stored copy) of ``slide`` hold NaN or inf.

    Args:
        features: The encoder's float32 features (n_tiles, n_features).
        stored: The same, cast to the stored dtype.
        slide: Slide name (for the message).
        encoder: Encoder preset name.
        precision: The precision the encoder ran at (``fp16``, ``bf16``, ``fp32``).
        dtype: The stored dtype (``float16``, ``float32``).

    Raises:
        NonFiniteFeaturesError: naming the slide, the encoder, how many tiles, and the likely cause.
    """
    bad = non_finite_rows(features)
    total = len(features)
    if bad:
        if precision == "fp16":
            cause = (
                f" It ran at precision fp16 (autocast), whose largest value is {FLOAT16_MAX:.0f}: activations beyond "
                "it overflow to inf. Set encoder.precision=bf16 (or fp32) and run again."
            )
        else:
            cause = (
                f" It ran at precision {precision}. A weights file that is damaged or does not fit the architecture "
                "gives such features: check the encoder's weights file and run again."
            )
        raise NonFiniteFeaturesError(
            f"encoder={encoder} returned non-finite features (NaN or inf) for {bad} of {total} tiles of slide "
            f"'{slide}'; no bag was written for it.{cause}"
        )
    overflow = non_finite_rows(stored)
    if overflow:
        largest = float(np.abs(features).max())
        raise NonFiniteFeaturesError(
            f"encoder={encoder}'s features of slide '{slide}' reach {largest:.4g}, beyond {dtype}'s largest value "
            f"{FLOAT16_MAX:.0f}: {overflow} of {total} tiles would be stored as inf; no bag was written for it. "
            "Set dataset.bags.dtype=float32 and run again."
        )


def remember_sound(path: Path) -> None:
    """Record that the bag at ``path`` (as it is now on disk) is sound: this process does not verify it again."""
    with_stat = _key(path)
    if with_stat is not None:
        _SOUND.add(with_stat)


def forget_verified() -> None:
    """Forget which bags this process verified (the next use verifies them again, as a new process would)."""
    _SOUND.clear()


def bag_damage(path: str | Path, upgrade: bool = False) -> str | None:
    """Why the bag at ``path`` cannot be used, or None when it is sound (verified once per process).

    Checks: the file opens; ``features`` is 2-D with as many rows as ``num_tiles`` says; its SHA-256 equals
    ``features_sha256``; every value is finite. An older bag without a checksum is sound when its values are
    finite; with ``upgrade`` it is then given its checksum (rewritten through a temporary file; a failure to
    write, e.g. a read-only folder, only means it is checked the same way next time).

    Args:
        path: The bag file.
        upgrade: Whether this process may add the checksum to an older bag.

    Returns:
        None, or a short description of the damage (for messages).
    """
    path = Path(path)
    key = _key(path)
    if key is None:
        return "missing"
    if key in _SOUND:
        return None
    try:
        with h5py.File(path, "r") as bag:
            expected = stored_checksum(bag.attrs)
            features = bag["features"]
            if (
                not isinstance(features, h5py.Dataset)
                or not np.issubdtype(features.dtype, np.floating)
                or features.ndim != 2
            ):
                return "features is not a 2-D (tiles, features) dataset of floats"
            if "num_tiles" in bag.attrs and attr_int(bag.attrs, "num_tiles") != features.shape[0]:
                return f"{features.shape[0]} feature rows but num_tiles={attr_int(bag.attrs, 'num_tiles')}"
            digest, bad = scan_features(features)
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as err:
        return f"unreadable: {err}"
    non_finite = f"{bad} tile(s) with non-finite features (NaN or inf)"
    if expected is not None and digest != expected:
        mismatch = f"features checksum mismatch (stored {expected[:12]}…, computed {digest[:12]}…)"
        return f"{mismatch}; {non_finite}" if bad else mismatch
    if bad:
        return non_finite
    if expected is None and upgrade and _add_checksum(path, digest):
        remember_sound(path)  # the rewritten file
    else:
        _SOUND.add(key)  # the file as it was before it was read (a bag replaced meanwhile is verified again)
    return None


def verify_bags(paths: list[Path], upgrade: bool = False, threads: int = VERIFY_THREADS) -> None:
    """Verify the bags at ``paths`` that exist, ``threads`` at a time (hashing releases the GIL), for the memo.

    The results are read back with :func:`bag_damage` (a memo hit for a sound bag).
    """
    existing = [path for path in paths if path.is_file()]
    workers = max(1, min(threads, len(existing), len(os.sched_getaffinity(0))))
    if workers == 1:
        return
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda path: bag_damage(path, upgrade=upgrade), existing))


def _add_checksum(path: Path, digest: str) -> bool:
    """Rewrite an older bag with ``features_sha256`` added (computed again from the bytes that are rewritten).

    Returns:
        Whether the bag was rewritten.
    """
    try:
        image = io.BytesIO(path.read_bytes())
        with h5py.File(image, "r+") as bag:
            if CHECKSUM_ATTR in bag.attrs or scan_features(bag["features"])[0] != digest:
                return False  # replaced since it was verified: leave it to the next verification
            bag.attrs[CHECKSUM_ATTR] = digest
        write_bytes_atomic(path, image.getvalue(), fsync=False)
    except OSError as err:
        log.info("Could not store the checksum of bag %s (%s); it is verified again next time", path, err)
        return False
    log.debug("Added %s to bag %s", CHECKSUM_ATTR, path)
    return True


def _raw(array: np.ndarray) -> memoryview:
    """The array's bytes in C order as a flat uint8 view (no copy when it is contiguous already)."""
    return np.ascontiguousarray(array).reshape(-1).view(np.uint8).data


def _key(path: Path) -> tuple[str, int, int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return str(Path(path).absolute()), stat.st_ino, stat.st_size, stat.st_mtime_ns
