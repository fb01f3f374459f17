"""Files written through src.infra.files are complete under their final name or absent, and leave no temp file."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from src.infra.files import atomic_file, atomic_path, leftovers, temp_path, write_json_atomic, write_text_atomic
from tests.full_disk import small_disk

MB = 1 << 20


def test_a_write_that_fills_the_disk_leaves_the_old_file_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with small_disk(tmp_path / "disk", MB, monkeypatch) as disk:
        path = disk.path / "status.json"
        write_json_atomic(path, {"status": "running"})
        with pytest.raises(OSError) as raised:
            write_json_atomic(path, {"status": "failed", "error": "x" * (2 * MB)})
        assert raised.value.errno == errno.ENOSPC
        assert json.loads(path.read_text()) == {"status": "running"}  # the old file, whole
        assert sorted(p.name for p in disk.path.iterdir()) == ["status.json"]  # no .status.json.<pid>.<hex>.tmp


def test_any_error_in_the_block_removes_the_temp_file_and_keeps_the_destination(tmp_path: Path) -> None:
    path = tmp_path / "table.csv"
    path.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_file(path, "w") as handle:
        handle.write("half of a new ")
        raise KeyboardInterrupt
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]
    with pytest.raises(ValueError, match="drawing failed"), atomic_path(tmp_path / "plot.png") as tmp:
        tmp.write_bytes(b"\x89PNG half")
        raise ValueError("drawing failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]


def test_the_temp_file_is_beside_the_destination_never_in_tmpdir(tmp_path: Path, monkeypatch) -> None:
    elsewhere = tmp_path / "tmpdir"
    elsewhere.mkdir()
    monkeypatch.setenv("TMPDIR", str(elsewhere))
    seen = []
    with atomic_path(tmp_path / "run" / "epoch1.ckpt") as tmp:
        seen.append(tmp)
        tmp.write_bytes(b"weights")
    assert seen[0].parent == tmp_path / "run" and seen[0].name.startswith(".epoch1.ckpt.")
    assert (tmp_path / "run" / "epoch1.ckpt").read_bytes() == b"weights" and not list(elsewhere.iterdir())


def test_leftovers_of_a_killed_writer_are_found_and_nothing_else(tmp_path: Path) -> None:
    killed = temp_path(tmp_path / "last.ckpt")
    killed.write_bytes(b"half")
    write_text_atomic(tmp_path / "logger_id.txt", "abc\n")
    (tmp_path / ".hidden.tmp").write_text("not ours")
    assert leftovers(tmp_path) == [killed] and str(os.getpid()) in killed.name
