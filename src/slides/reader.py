"""The slide reader interface every backend implements; `reader_class` and `open_slide` pick one.

A backend subclasses `SlideReader`: it declares the file ``extensions`` it reads, fills the
attributes in its constructor ``(path, mpp_override=None, mpp=None)`` (``mpp`` through
`src.slides.mpp.resolve_mpp`, which gets both; errors as `SlideError` naming the file) and
implements `read_region` and `close`; everything else (best level, tile reads, thumbnail,
context manager) is shared. A backend may override `read_tile` with a faster path (the
tiffslide backend decodes stored JPEG tiles directly, see `src.slides.jpeg_tiles`).

Adding a backend is one new file: ``src/slides/<name>_backend.py`` holding one `SlideReader`
subclass is then selected by its short name (``dataset.backend=<name>`` for ``train.py`` and
``extract.py``), and a class elsewhere by its dotted path (``pkg.module.Class``);
there is no list to edit. Two backends ship: ``tiffslide`` (`TiffSlideReader`, the default, pure
Python, also QPTIFF) and ``openslide`` (`OpenSlideReader`, the OpenSlide C library: also MIRAX,
Hamamatsu VMS, DICOM, Sakura...).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from abc import ABC, abstractmethod
from pathlib import Path
from types import ModuleType, TracebackType
from typing import ClassVar, Self

import cv2
import numpy as np

from src.command_keys import config_key
from src.slides.formats import reads_format, slide_format

BAND_BYTES = 32 << 20  # level pixels read at once when a whole level is streamed
BACKEND_PACKAGE = "src.slides"  # shipped backends: BACKEND_PACKAGE.<name>_backend
BACKEND_SUFFIX = "_backend"
DEFAULT_BACKEND = "tiffslide"


class SlideError(RuntimeError):
    """A slide cannot be opened or used; the message always names the slide path."""


class SlideReader(ABC):
    """Read-only access to a whole-slide image pyramid.

    Attributes:
        extensions: File extensions the backend reads (class attribute; lower case, no dot);
            `src.slides.discover.find_slides` looks for these.
        path: The slide file.
        name: The file name without its extension (``"TCGA-01 (a)"`` for ``"TCGA-01 (a).svs"``).
        mpp: Microns per level-0 pixel.
        dimensions: Level-0 ``(width, height)`` in pixels.
        level_count: Number of pyramid levels.
        level_dimensions: ``(width, height)`` of every level.
        level_downsamples: Downsample of every level relative to level 0.
        properties: Vendor properties as strings.
    """

    extensions: ClassVar[frozenset[str]] = frozenset()
    path: Path
    name: str
    mpp: float
    dimensions: tuple[int, int]
    level_count: int
    level_dimensions: list[tuple[int, int]]
    level_downsamples: list[float]
    properties: dict[str, str]

    @abstractmethod
    def __init__(self, path: str | Path, mpp_override: float | None = None, *, mpp: float | None = None) -> None:
        """Open the slide and fill the attributes above (`open_slide` calls every backend this way).

        Args:
            path: The slide file.
            mpp_override: Microns per pixel for a file that records none.
            mpp: Microns per pixel that replaces the file's own (a per-slide annotation value).
        """

    @abstractmethod
    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """Read a region of one pyramid level.

        Args:
            location: Top-left ``(x, y)`` in level-0 pixels.
            level: Pyramid level to read from.
            size: ``(width, height)`` in pixels of `level`. Parts outside the slide are white.

        Returns:
            An ``(height, width, 3)`` uint8 RGB array.
        """

    @abstractmethod
    def close(self) -> None:
        """Release the file handle."""

    def best_level_for_downsample(self, downsample: float) -> int:
        """Return the level with the largest downsample not above `downsample`.

        A relative tolerance of 1e-3 absorbs rounding in stored level sizes (4.0 vs 4.0016).
        """
        best = 0
        for level, level_downsample in enumerate(self.level_downsamples):
            if level_downsample <= downsample * (1 + 1e-3):
                best = level
        return best

    def read_tile(self, location: tuple[int, int], level: int, extract_px: int, tile_px: int) -> np.ndarray:
        """Read a square tile: ``extract_px`` pixels of `level` at level-0 `location`, resized to `tile_px`.

        The default reads the region and resizes it with area interpolation; backends may
        override it with something faster that gives (nearly) the same pixels.

        Returns:
            A ``(tile_px, tile_px, 3)`` uint8 RGB array; parts outside the slide are white.
        """
        tile = self.read_region(location, level, (extract_px, extract_px))
        if extract_px != tile_px:
            tile = cv2.resize(tile, (tile_px, tile_px), interpolation=cv2.INTER_AREA)
        return tile

    def get_thumbnail(self, max_size: int) -> np.ndarray:
        """Return an RGB uint8 thumbnail whose longest side is at most `max_size` pixels.

        Reads the smallest level that is still at least as large as the thumbnail, band by band,
        and downsizes it with area interpolation.
        """
        width, height = self.dimensions
        scale = max(width / max_size, height / max_size, 1.0)
        size = (max(1, int(width / scale)), max(1, int(height / scale)))
        return self.read_level_resized(self.best_level_for_downsample(scale), size)

    def read_level_resized(self, level: int, size: tuple[int, int], band_bytes: int | None = None) -> np.ndarray:
        """Read a whole level resized to ``size = (width, height)``, streaming horizontal bands.

        Only one band of the level (about `band_bytes`) is in memory at a time, so this is safe
        on a level 0 of any size: memory is the output plus one band.

        Args:
            level: The pyramid level to read.
            size: Output ``(width, height)``; equal to the level size means no resize.
            band_bytes: Upper bound on the bytes of level pixels read at once (at least one
                output row's worth); None = `BAND_BYTES` (32 MiB).

        Returns:
            An ``(height, width, 3)`` uint8 RGB array.
        """
        level_w, level_h = self.level_dimensions[level]
        out_w, out_h = size
        band_bytes = BAND_BYTES if band_bytes is None else band_bytes
        if (out_w, out_h) == (level_w, level_h) and level_w * level_h * 3 <= band_bytes:
            return self.read_region((0, 0), level, (level_w, level_h))
        downsample = self.level_downsamples[level]
        rows_per_out = level_h / out_h
        band_rows = max(1, int(band_bytes / (3 * level_w * rows_per_out)))
        out = np.empty((out_h, out_w, 3), np.uint8)
        for start in range(0, out_h, band_rows):
            stop = min(out_h, start + band_rows)
            y0, y1 = round(start * rows_per_out), round(stop * rows_per_out)
            band = self.read_region((0, int(y0 * downsample)), level, (level_w, max(1, y1 - y0)))
            out[start:stop] = cv2.resize(band, (out_w, stop - start), interpolation=cv2.INTER_AREA)
        return out

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        width, height = self.dimensions
        return (
            f"{type(self).__name__}({str(self.path)!r}, {width}x{height}, "
            f"mpp={self.mpp:.4g}, levels={self.level_count})"
        )


def slide_name(path: str | Path) -> str:
    """Return the slide name: the file name without its (last) extension."""
    return Path(path).stem


def shipped_backends() -> list[str]:
    """Short names of the backends in this package: every ``src/slides/<name>_backend.py``."""
    package = importlib.import_module(BACKEND_PACKAGE)
    modules = (info.name for info in pkgutil.iter_modules(package.__path__))
    return sorted(name.removesuffix(BACKEND_SUFFIX) for name in modules if name.endswith(BACKEND_SUFFIX))


def reader_class(backend: str | None = None) -> type[SlideReader]:
    """The `SlideReader` subclass a backend setting names.

    Args:
        backend: None for tiffslide; a short name (``"tiffslide"``, ``"openslide"``): the one
            `SlideReader` subclass of ``src.slides.<name>_backend``; or a dotted path
            ``"pkg.module.Class"`` (or ``"pkg.module"`` holding one subclass).

    Returns:
        The reader class (not imported backend libraries: those load when a slide is opened).

    Raises:
        ValueError: `backend` names no importable `SlideReader` subclass (the message lists the
            shipped backends), or the class declares no ``extensions``.
    """
    name = DEFAULT_BACKEND if backend is None else str(backend).strip()
    if "." not in name:
        module = _import_backend(f"{BACKEND_PACKAGE}.{name}{BACKEND_SUFFIX}", backend)
        cls = _module_reader(module, backend)
    else:
        module_name, _, attr = name.rpartition(".")
        target = getattr(_import_backend(module_name, backend), attr, None)
        if target is None:  # not imported yet, or not there
            try:
                target = importlib.import_module(name)
            except ModuleNotFoundError as err:
                if err.name != name:
                    raise
                raise ValueError(f"Slide backend {backend!r}: module {module_name} has no {attr!r}") from err
        cls = _module_reader(target, backend) if isinstance(target, ModuleType) else target
    if not (isinstance(cls, type) and issubclass(cls, SlideReader)) or inspect.isabstract(cls):
        raise ValueError(f"Slide backend {backend!r} is not a concrete SlideReader subclass: {cls!r}")
    if not cls.extensions:
        raise ValueError(
            f"Slide backend {backend!r} ({cls.__name__}) declares no file extensions; "
            "set its class attribute extensions = frozenset({'svs', ...})"
        )
    return cls


def backend_name(cls: type[SlideReader]) -> str:
    """The shortest `backend` setting that selects `cls`: its short name if shipped, else its dotted path."""
    module = cls.__module__
    short = module.removeprefix(f"{BACKEND_PACKAGE}.").removesuffix(BACKEND_SUFFIX)
    if f"{BACKEND_PACKAGE}.{short}{BACKEND_SUFFIX}" == module and "." not in short:
        try:
            if reader_class(short) is cls:
                return short
        except ValueError:
            pass
    return f"{module}.{cls.__qualname__}"


def _import_backend(module_name: str, backend: str | None) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name is not None and not f"{module_name}.".startswith(f"{err.name}."):
            raise  # the backend module exists but needs a missing package: show that
        raise ValueError(
            f"Unknown slide backend {backend!r}: choose one of {shipped_backends()} "
            "or the dotted path of a SlideReader subclass (pkg.module.Class)"
        ) from err
    except ImportError as err:
        raise ValueError(f"Slide backend {backend!r} cannot be imported: {err}") from err


def _module_reader(module: ModuleType, backend: str | None) -> type[SlideReader]:
    """The one concrete `SlideReader` subclass defined in `module`."""
    found = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, SlideReader)
        and obj.__module__ == module.__name__
        and not inspect.isabstract(obj)
    ]
    if len(found) != 1:
        names = [cls.__name__ for cls in found]
        raise ValueError(
            f"Slide backend {backend!r}: module {module.__name__} must define exactly one SlideReader "
            f"subclass, found {names}; name the class instead ({module.__name__}.<Class>)"
        )
    return found[0]


def open_slide(
    path: str | Path, mpp_override: float | None = None, backend: str | None = None, mpp: float | None = None
) -> SlideReader:
    """Open a slide.

    Args:
        path: The slide file.
        mpp_override: Microns per pixel for a file that records none (a file's own MPP wins).
        backend: The reader (see `reader_class`): None = tiffslide, a short name such as
            ``"openslide"``, or a dotted class path.
        mpp: Microns per pixel that replaces the file's own (passed to the reader only when set,
            so a backend written before this argument still opens slides without it).

    Returns:
        An open `SlideReader`; close it or use it as a context manager.

    Raises:
        SlideError: The file is missing, corrupt, in a format the backend does not read (naming the backend
            that does: `unsupported_format`), or has no usable MPP and no override.
        ValueError: `backend` does not name a `SlideReader` subclass.
    """
    cls = reader_class(backend)
    if Path(path).exists() and not reads_format(cls.extensions, path):
        raise SlideError(unsupported_format(path, backend_name(cls)))
    extra = {} if mpp is None else {"mpp": mpp}
    return cls(path, mpp_override=mpp_override, **extra)


def format_readers() -> dict[str, list[str]]:
    """File extension (lower case, no dot) -> the shipped backends that read it."""
    readers: dict[str, list[str]] = {}
    for backend in shipped_backends():
        for extension in reader_class(backend).extensions:
            readers.setdefault(extension, []).append(backend)
    return readers


def unsupported_format(path: str | Path, backend: str) -> str:
    """The error for a slide whose format `backend` does not read, naming the file and the backends that do.

    Every command says this for such a slide (`open_slide` raises it), with the running command's key for the
    backend (``dataset.backend=`` or predict.py's ``backend=``: `src.command_keys`).
    """
    readers = [name for name in format_readers().get(slide_format(path), []) if name != backend]
    key = config_key("backend")
    fix = f"use {' or '.join(f'{key}={name}' for name in readers)}" if readers else "no shipped backend reads it"
    return f"unsupported format for backend {backend}: {path}; {fix}"
