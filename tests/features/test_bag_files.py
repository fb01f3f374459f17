"""Bag folder files: a killed run's temporary bag files are removed once they are old, a live write's never."""

from __future__ import annotations

import os
import time
from pathlib import Path

from src.features.files import LEFTOVER_AGE_S, remove_old_leftovers
from src.infra.temp_files import temp_path


def test_only_old_temporary_bag_files_are_removed(tmp_path: Path) -> None:
    bag = tmp_path / "P001-1.h5"
    bag.write_bytes(b"complete")
    old, live = temp_path(bag), temp_path(tmp_path / "P002-1.h5")
    old.write_bytes(b"half")
    live.write_bytes(b"half")
    then = time.time() - LEFTOVER_AGE_S - 60
    os.utime(old, (then, then))
    remove_old_leftovers(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([bag.name, live.name])
