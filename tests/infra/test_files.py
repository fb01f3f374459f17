"""Files written through src.infra.files are complete under their final name or absent, and leave no temp file;
src.infra.files is the only place in src/ that moves a file into place."""

from __future__ import annotations

import ast
import errno
import json
from pathlib import Path

import pytest

from src.infra.files import atomic_file, atomic_path, move_file, write_json_atomic
from tests.full_disk import small_disk

MB = 1 << 20
SRC = Path(__file__).resolve().parents[2] / "src"
MOVES = frozenset({"os.replace", "os.rename", "os.renames", "shutil.move"})


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
        assert sorted(p.name for p in disk.path.iterdir()) == ["status.json"]  # no status.json.<pid>.<hex>.partial


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
    assert seen[0].parent == tmp_path / "run" and seen[0].name.startswith("epoch1.ckpt.")
    assert (tmp_path / "run" / "epoch1.ckpt").read_bytes() == b"weights" and not list(elsewhere.iterdir())


def test_a_file_set_aside_replaces_the_target_in_one_step(tmp_path: Path) -> None:
    (tmp_path / "last.ckpt").write_bytes(b"damaged")
    (tmp_path / "last.ckpt.unusable").write_bytes(b"an older damaged one")
    move_file(tmp_path / "last.ckpt", tmp_path / "last.ckpt.unusable")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt.unusable"]
    assert (tmp_path / "last.ckpt.unusable").read_bytes() == b"damaged"


def file_moves(source: str) -> list[str]:
    """The calls in Python ``source`` that move a file: ``os.replace``/``rename``, ``shutil.move``, ``Path.replace``.

    ``x.replace(a)`` and ``x.rename(a)`` with one positional argument (not a dict) and no keyword are taken for
    ``Path`` moves; ``str.replace`` takes two arguments, ``DataFrame.rename`` keywords or a mapping.
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        name = ast.unparse(node.func)
        one_path = len(node.args) == 1 and not node.keywords and not isinstance(node.args[0], ast.Dict | ast.Set)
        if name in MOVES or (node.func.attr in ("replace", "rename") and one_path):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_move_finder_finds_file_moves_and_nothing_else() -> None:
    moves = "os.replace(tmp, final)\nPath(tmp).replace(final)\ntmp.rename(final)\nshutil.move(a, b)\nos.rename(a, b)"
    assert len(file_moves(moves)) == 5
    others = "'a-b'.replace('-', '_')\nframe.rename(columns={'a': 'b'})\nframe.replace({1: 2})\nday.replace(year=1)"
    assert file_moves(others) == []


def test_only_src_infra_moves_files_into_place() -> None:
    """One atomic-write implementation: every rename in src/ is src.infra's (write beside, fsync, rename)."""
    infra = SRC / "infra"
    found = {
        str(path.relative_to(SRC.parent)): moves
        for path in sorted(SRC.rglob("*.py"))
        if not path.is_relative_to(infra) and (moves := file_moves(path.read_text(encoding="utf-8")))
    }
    assert found == {}, f"write through src.infra.files (atomic_path, move_file...) instead: {found}"
