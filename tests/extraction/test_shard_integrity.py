"""A damaged shard (truncated, overwritten) is never taken as complete: re-extracted, or a clear error."""

from __future__ import annotations

import errno
import os
import shutil
import tarfile
import zlib
from pathlib import Path

import pytest

from src.data.tiles import TileIndex
from src.extraction import shard_crc
from src.extraction.extract import extract_slides
from src.extraction.shard_crc import VERIFIED_SUFFIX, verified_path
from src.extraction.shards import (
    TAR_ENDS_BYTES,
    ends_crc32,
    index_path,
    read_index,
    shard_damage,
    shard_dir,
    tar_path,
)
from src.slides.discover import find_slides
from src.slides.tile_settings import TileSettings

SETTINGS = TileSettings(tile_px=64, tile_um=64)


@pytest.fixture
def extracted(two_slides: dict[str, Path], tmp_path: Path) -> tuple[dict[str, Path], Path]:
    """Copies of two slides, extracted: (slide -> file, shard folder)."""
    folder = tmp_path / "slides"
    folder.mkdir()
    for path in two_slides.values():
        shutil.copy2(path, folder / path.name)
    slides = find_slides(folder)
    extract_slides(slides, tmp_path / "shards", SETTINGS, progress=False)
    return slides, shard_dir(tmp_path / "shards", SETTINGS)


def test_the_index_records_the_tar_size_and_checksums(extracted: tuple[dict[str, Path], Path]) -> None:
    slides, folder = extracted
    for slide in slides:
        data = tar_path(folder, slide).read_bytes()
        record = read_index(folder, slide)["tar"]
        assert record["bytes"] == len(data) and record["crc32"] == zlib.crc32(data)
        assert record["crc32_ends"] == ends_crc32(tar_path(folder, slide), len(data))
        assert shard_damage(folder, slide) is None


@pytest.mark.parametrize("damage", ["truncate", "overwrite the end"])
def test_a_damaged_shard_is_extracted_again(extracted: tuple[dict[str, Path], Path], damage: str) -> None:
    slides, folder = extracted
    first, second = list(slides)
    tar = tar_path(folder, first)
    before = tar.read_bytes()
    if damage == "truncate":
        os.truncate(tar, len(before) // 2)
        assert "truncated" in shard_damage(folder, first)
    else:  # same size, damaged last block (a torn write, a bad copy)
        tar.write_bytes(before[:-512] + b"\x01" * 512)
        assert "checksum" in shard_damage(folder, first)
    assert read_index(folder, first) is None and read_index(folder, first, slides[first]) is None
    report = extract_slides(slides, folder.parent, SETTINGS, progress=False).set_index("slide")
    assert report.loc[first, "status"] == "done" and report.loc[second, "status"] == "skipped"
    assert tar.read_bytes() == before
    assert read_index(folder, first, slides[first]) is not None


def test_a_damaged_shard_without_its_slide_file_is_a_clear_error(extracted: tuple[dict[str, Path], Path]) -> None:
    slides, folder = extracted
    first, second = list(slides)
    tar = tar_path(folder, first)
    os.truncate(tar, tar.stat().st_size - 1000)
    slides[first].unlink()
    for path in (slides[first], None):  # a file that is gone, or no file found for the slide
        report = extract_slides({first: path, second: slides[second]}, folder.parent, SETTINGS, progress=False)
        row = report.set_index("slide").loc[first]
        assert row["status"] == "failed"
        assert f"slide '{first}'" in row["error"] and str(tar) in row["error"] and "truncated" in row["error"]
        assert "Put the slide file back" in row["error"] and str(index_path(folder, first)) in row["error"]
    assert tar.exists()  # nothing deleted that the user may want to recover
    with pytest.raises(FileNotFoundError, match=rf"slide '{first}' is damaged: {tar}.*truncated"):
        TileIndex.from_shards(folder, [second, first])
    assert len(TileIndex.from_shards(folder, [second])) == read_index(folder, second)["num_tiles"]


LARGE = TileSettings(tile_px=96, tile_um=32)  # shards of a few hundred KiB: a middle beyond the checked ends


def _large_shards(slides: dict[str, Path], root: Path) -> Path:
    extract_slides(slides, root, LARGE, progress=False)
    folder = shard_dir(root, LARGE)
    for slide in slides:
        assert tar_path(folder, slide).stat().st_size > 2 * TAR_ENDS_BYTES + 8192
    return folder


def _middle_member(tar: Path) -> tarfile.TarInfo:
    """An image member of the tar wholly outside its first and last 64 KiB."""
    size = tar.stat().st_size
    with tarfile.open(tar) as archive:
        inside = [
            m
            for m in archive.getmembers()
            if m.name.endswith(".jpg") and m.offset > TAR_ENDS_BYTES and m.offset_data + m.size < size - TAR_ENDS_BYTES
        ]
    return inside[len(inside) // 2]


def _flip(path: Path, position: int) -> None:
    """Damage one byte in place (same file, same size), as a disk or a bad copy does."""
    with open(path, "r+b") as handle:
        handle.seek(position)
        byte = handle.read(1)
        handle.seek(position)
        handle.write(bytes([byte[0] ^ 0xFF]))


@pytest.mark.parametrize("where", ["JPEG data", "tar header"])
def test_a_byte_damaged_in_the_middle_of_a_shard_is_found_and_extracted_again(
    extracted: tuple[dict[str, Path], Path], where: str
) -> None:
    slides, _ = extracted
    folder = _large_shards(slides, folder_root := extracted[1].parent)
    first, second = list(slides)
    tar = tar_path(folder, first)
    before, stat_before = tar.read_bytes(), tar.stat()
    member = _middle_member(tar)
    _flip(tar, member.offset_data + member.size // 2 if where == "JPEG data" else member.offset + 130)
    assert tar.stat().st_mtime_ns != stat_before.st_mtime_ns or tar.stat().st_ino != stat_before.st_ino
    assert read_index(folder, first) is not None  # size and ends unchanged: the cheap checks pass
    assert "CRC32" in shard_damage(folder, first) and read_index(folder, first, verify=True) is None
    report = extract_slides(slides, folder_root, LARGE, progress=False).set_index("slide")
    assert report.loc[first, "status"] == "done" and report.loc[second, "status"] == "skipped"
    assert tar.read_bytes() == before  # the same shard a fresh extraction writes
    assert read_index(folder, first, slides[first], verify=True) is not None
    assert len(TileIndex.from_shards(folder, [first])) == read_index(folder, first)["num_tiles"]


def test_a_checked_shard_is_read_in_full_again_only_when_its_file_changes(
    extracted: tuple[dict[str, Path], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, first, tar, reads = _count_full_reads(extracted, monkeypatch)
    assert read_index(folder, first, verify=True) is not None and reads == []  # checked as it was written
    stat = tar.stat()
    os.utime(tar, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # touched: read once, then stamped
    assert read_index(folder, first, verify=True) is not None and reads == [tar]
    assert read_index(folder, first, verify=True) is not None and reads == [tar]
    assert verified_path(tar) == folder / f"{first}{VERIFIED_SUFFIX}"


def test_a_shard_folder_that_cannot_be_written_is_read_in_full_once_per_run(
    extracted: tuple[dict[str, Path], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, first, tar, reads = _count_full_reads(extracted, monkeypatch)
    monkeypatch.setattr(shard_crc, "_CHECKED", {})  # a new run, whose shard folder is read-only (shared)
    monkeypatch.setattr(shard_crc, "write_bytes_atomic", _read_only)
    verified_path(tar).unlink()
    for _ in range(3):
        assert read_index(folder, first, verify=True) is not None
    assert reads == [tar] and not verified_path(tar).exists()


def _read_only(*args: object, **kwargs: object) -> None:
    raise OSError(errno.EROFS, "Read-only file system")


def test_a_shard_damaged_without_a_trace_stops_with_a_clear_error_and_is_extracted_again_next_run(
    extracted: tuple[dict[str, Path], Path],
) -> None:
    slides, _ = extracted
    folder = _large_shards(slides, root := extracted[1].parent)
    first = next(iter(slides))
    tar = tar_path(folder, first)
    before, stat = tar.read_bytes(), tar.stat()
    _flip(tar, _middle_member(tar).offset + 130)  # a header: tarfile stops reading there
    os.utime(tar, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # bit rot: same file, same size, same mtime
    assert read_index(folder, first, verify=True) is not None  # its stamp still matches
    with pytest.raises(ValueError, match=rf"shard {tar} of slide '{first}' is damaged: it holds \d+ images.*Run again"):
        TileIndex.from_shards(folder, [first])
    assert not verified_path(tar).exists()
    report = extract_slides(slides, root, LARGE, progress=False).set_index("slide")
    assert report.loc[first, "status"] == "done" and tar.read_bytes() == before


def _count_full_reads(
    extracted: tuple[dict[str, Path], Path], monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, str, Path, list[Path]]:
    """The shard folder, its first slide and tar, and the list of tars read in full (whole-file CRC32) from now."""
    slides, folder = extracted
    first = next(iter(slides))
    tar = tar_path(folder, first)
    reads: list[Path] = []
    monkeypatch.setattr(shard_crc, "file_crc32", lambda path: reads.append(Path(path)) or zlib.crc32(tar.read_bytes()))
    return folder, first, tar, reads
