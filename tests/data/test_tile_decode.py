"""Stored tiles decode as RGB whichever format the shards use (``tiles.img_format=jpg|png``)."""

from __future__ import annotations

import numpy as np
import pytest
from torchvision.io import decode_jpeg

from src.data.tiles import decode_tile
from src.slides.tiling import encode_tile


@pytest.mark.parametrize("img_format", ["jpg", "png"])
def test_a_stored_tile_decodes_to_its_pixels(img_format: str) -> None:
    tile = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    tile[:, :16] = (200, 30, 90)  # a flat colour block: JPEG keeps it close, PNG exactly
    data = encode_tile(tile, img_format, 95)
    image = decode_tile(data).permute(1, 2, 0).numpy()
    if img_format == "png":
        np.testing.assert_array_equal(image, tile)  # lossless, and RGB (not cv2's BGR)
    else:
        import torch

        expected = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8)).permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(image, expected)  # the same decoder as before for JPEG shards
        assert np.abs(image[:, :8].astype(int) - (200, 30, 90)).max() < 10  # RGB order; away from the noise
