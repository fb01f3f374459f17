"""Temporary files have one name scheme, are tracked until moved into place, and are found again after a kill -9."""

from __future__ import annotations

import os
from pathlib import Path

from src.infra.files import PendingFile, atomic_path, write_text_atomic
from src.infra.temp_files import find_leftovers, remove_leftovers, remove_own, temp_path


def test_leftovers_of_killed_writers_are_found_by_final_name_and_nothing_else(tmp_path: Path) -> None:
    killed = temp_path(tmp_path / "last.ckpt")
    killed.write_bytes(b"half")
    older = [tmp_path / "slide.tar.partial", tmp_path / ".status.json.4242.0123abcd.tmp"]  # names of older versions
    for path in older:
        path.write_bytes(b"half")
    write_text_atomic(tmp_path / "logger_id.txt", "abc\n")
    (tmp_path / ".hidden.tmp").write_text("not ours")
    (tmp_path / "notes.partial.txt").write_text("not ours")
    found = find_leftovers(tmp_path)
    assert found == {"last.ckpt": [killed], "slide.tar": [older[0]], "status.json": [older[1]]}
    assert killed.name.startswith(f"last.ckpt.{os.getpid()}.") and killed.name.endswith(".partial")
    remove_leftovers([*found["last.ckpt"], *found["slide.tar"], *found["status.json"]])
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden.tmp", "logger_id.txt", "notes.partial.txt"]


def test_a_missing_folder_has_no_leftovers(tmp_path: Path) -> None:
    assert find_leftovers(tmp_path / "absent") == {}


def test_a_process_that_must_die_deletes_its_unfinished_files_and_keeps_its_finished_ones(tmp_path: Path) -> None:
    shard = PendingFile(tmp_path / "slide.tar")
    shard.path.write_bytes(b"half a tar")
    index = PendingFile(tmp_path / "slide.index.json")
    index.path.write_bytes(b"{}")
    index.commit()
    with atomic_path(tmp_path / "thumbnail.jpg") as tmp:
        tmp.write_bytes(b"half a picture")
        remove_own()  # what a worker does when its parent died, here in the middle of a write
        assert sorted(p.name for p in tmp_path.iterdir()) == ["slide.index.json"]
        tmp.write_bytes(b"a whole picture")  # (the block goes on only because this test does not exit)
    remove_own()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slide.index.json", "thumbnail.jpg"]


def test_a_discarded_file_leaves_the_final_one_as_it_was(tmp_path: Path) -> None:
    (tmp_path / "slide.tar").write_bytes(b"the old shard")
    shard = PendingFile(tmp_path / "slide.tar")
    shard.path.write_bytes(b"half a new one")
    shard.discard()
    shard.discard()  # twice: nothing to do, no error
    assert [p.name for p in tmp_path.iterdir()] == ["slide.tar"]
    assert (tmp_path / "slide.tar").read_bytes() == b"the old shard"
