"""`SlideReader` backed by the OpenSlide C library (openslide-python + openslide-bin).

Reads what tiffslide reads and also MIRAX (.mrxs), Hamamatsu VMS/VMU, Sakura (.svslide) and
DICOM WSI (.dcm: OpenSlide opens one file and finds the rest of the slide's series in its folder, so a
folder of .dcm files is opened through its first file). Select it with ``dataset.backend=openslide``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from src.slides.formats import DICOM_EXTENSION, dicom_file, slide_format
from src.slides.mpp import resolve_mpp
from src.slides.reader import SlideError, SlideReader, slide_name
from src.slides.tiff_check import file_damage, truncated_message

if TYPE_CHECKING:
    import openslide

INSTALL_HINT = "pip install openslide-python openslide-bin"

# What OpenSlide 4.0.1 opens of DICOM (src/openslide-vendor-dicom.c), said whenever it cannot open a .dcm file.
DICOM_SUPPORT = (
    "OpenSlide reads a DICOM WSI as one series of VL Whole Slide Microscopy Image Storage instances "
    "(SOP class 1.2.840.10008.5.1.4.1.1.77.1.6) in one folder, opened through any one of its files (or the "
    "folder): every instance of the series must have an image flavor (ImageType value 3: VOLUME for a pyramid "
    "level; LABEL, OVERVIEW or THUMBNAIL; other flavors are ignored), 8-bit RGB pixels (3 samples, "
    "PlanarConfiguration 0) in one focal plane, and the transfer syntax explicit VR little endian "
    "(1.2.840.10008.1.2.1), JPEG baseline (1.2.840.10008.1.2.4.50) or JPEG 2000 (1.2.840.10008.1.2.4.90/.91); "
    "TILED_FULL or TILED_SPARSE levels and levels split into concatenations are read"
)
# OpenSlide's reason (a part of its message) -> what is wrong with the file and how to make it readable
DICOM_FIXES = (
    (
        "Couldn't get image flavor",
        "set the image flavor in each file of the series (its ImageType has no third value), e.g. "
        'dcmodify -m "(0008,0008)=DERIVED\\PRIMARY\\VOLUME\\NONE" on the pyramid levels\' files',
    ),
    (
        "Unsupported transfer syntax",
        "transcode the series to one of those transfer syntaxes (e.g. gdcmconv "
        "--raw, or JPEG baseline), or export the slide from the scanner software as SVS or TIFF",
    ),
    ("Not a WSI DICOM", "give a file of the slide's WSI series (this file is not a whole-slide image instance)"),
    (
        "No pyramid levels found",
        "put every file of the series in one folder (no instance there is a pyramid level, image flavor VOLUME)",
    ),
    ("Unsupported photometric interpretation", "export the slide from the scanner software as SVS or TIFF"),
    (
        "Attribute",
        "export the slide from the scanner software as SVS or TIFF (its pixels are not 8-bit RGB in one focal "
        "plane, e.g. a fluorescence or z-stack series, which OpenSlide does not read)",
    ),
)


class OpenSlideReader(SlideReader):
    """Slide reader using `openslide.OpenSlide`.

    OpenSlide returns RGBA with transparent pixels outside the scanned area (and outside the
    slide); they are composited on white, so an empty region reads as white as with tiffslide.

    Args:
        path: The slide file, or a folder of DICOM (.dcm) files holding one slide.
        mpp_override: Microns per pixel for a file that records none.
        mpp: Microns per pixel that replaces the file's own (a per-slide annotation value).

    Raises:
        SlideError: Missing file, a file OpenSlide cannot open, or no usable MPP and no override.
        ImportError: openslide-python or the OpenSlide library is not installed.
    """

    extensions: ClassVar[frozenset[str]] = frozenset(
        {"svs", "tif", "tiff", "ndpi", "vms", "vmu", "scn", "mrxs", "bif", "svslide", "dcm"}
    )
    _slide: openslide.OpenSlide | None  # None once closed

    def __init__(self, path: str | Path, mpp_override: float | None = None, mpp: float | None = None) -> None:
        try:
            import openslide
        except ImportError as err:
            raise ImportError(f"The openslide slide backend needs OpenSlide: {INSTALL_HINT} ({err})") from err

        self.path = Path(path)
        self.name = slide_name(self.path)
        if self.path.is_dir():
            self.name = self.path.name
            self.path = dicom_file(self.path) or self.path
        if not self.path.is_file():
            raise SlideError(f"Slide file not found: {self.path}")
        try:
            self._slide = openslide.OpenSlide(str(self.path))
        except Exception as err:  # OpenSlideUnsupportedFormatError, OpenSlideError, OSError
            damage = file_damage(self.path)  # OpenSlide says "Unsupported or missing image file" for a cut TIFF
            if damage is not None:
                raise SlideError(truncated_message(self.path, damage)) from err
            message = f"Cannot open slide {self.path} with OpenSlide: {err}"
            if slide_format(self.path) == DICOM_EXTENSION:
                message = dicom_error(message)
            raise SlideError(message) from err
        damage = file_damage(self.path)  # a TIFF cut short that OpenSlide still opens (fails at some tile)
        if damage is not None:
            self.close()
            raise SlideError(truncated_message(self.path, damage))
        self.dimensions = tuple(int(v) for v in self._slide.dimensions)  # type: ignore[assignment]
        self.level_count = int(self._slide.level_count)
        self.level_dimensions = [(int(w), int(h)) for w, h in self._slide.level_dimensions]
        self.level_downsamples = [float(d) for d in self._slide.level_downsamples]
        self.properties = {str(k): str(v) for k, v in self._slide.properties.items()}
        try:
            self.mpp = resolve_mpp(self.path, self.properties, mpp_override, mpp)
        except SlideError:
            self.close()
            raise

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """Read ``size`` pixels of `level` at level-0 `location`; outside the slide is white."""
        try:
            assert self._slide is not None, "the slide is closed"
            width, height = size
            image = self._slide.read_region((int(location[0]), int(location[1])), int(level), (int(width), int(height)))
        except Exception as err:
            raise SlideError(
                f"Cannot read region {location} level {level} size {size} of slide {self.path}: {err}"
            ) from err
        return rgba_on_white(np.asarray(image))

    def close(self) -> None:
        """Close the OpenSlide handle."""
        slide = getattr(self, "_slide", None)
        if slide is not None:
            slide.close()
            self._slide = None


def rgba_on_white(rgba: np.ndarray) -> np.ndarray:
    """Composite a non-premultiplied RGBA uint8 array on white; returns ``HxWx3`` uint8 RGB."""
    rgb, alpha = rgba[:, :, :3], rgba[:, :, 3]
    if alpha.size == 0 or alpha.min() == 255:
        return np.ascontiguousarray(rgb)
    weight = alpha[:, :, None].astype(np.float32) / 255.0
    return np.rint(rgb * weight + 255.0 * (1.0 - weight)).astype(np.uint8)


def dicom_error(message: str) -> str:
    """OpenSlide's error for a DICOM file, with which DICOM WSIs it reads and how to make this one readable."""
    fix = next((fix for reason, fix in DICOM_FIXES if reason in message), None)
    fix = fix or "export the slide from the scanner software as SVS or TIFF, or fix the attribute OpenSlide names"
    return f"{message}. {DICOM_SUPPORT}. To read this slide: {fix}"
