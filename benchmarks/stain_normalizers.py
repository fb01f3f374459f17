"""Per-tile cost of on-the-fly stain normalization, against the JPEG decode every tile already pays.

    python benchmarks/stain_normalizers.py [--tile-px 299] [--n 50]

Prints milliseconds per tile (one CPU thread, as in a data-loading worker) and the ratio to decoding.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torchvision.io import decode_jpeg, encode_jpeg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.data.normalizers import Macenko, Reinhard, read_image

TILES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "tiles"


def per_tile_ms(fn, n: int) -> float:
    fn()  # warm up
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tile-px", type=int, default=299)
    parser.add_argument("--n", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(1)
    target = read_image(TILES / "tissue-level0-4302-10273-4814-10785.png")
    source = read_image(TILES / "medium-nuclei-score-level1.png")[:, : args.tile_px, : args.tile_px].contiguous()
    jpeg = encode_jpeg(source, quality=95)
    decode = per_tile_ms(lambda: decode_jpeg(jpeg), args.n)
    print(f"tile {args.tile_px} px, one thread; baseline JPEG decode: {decode:.2f} ms/tile")
    for cls in (Reinhard, Macenko):
        normalizer = cls().fit([target])
        ms = per_tile_ms(lambda normalizer=normalizer: normalizer(source), args.n)
        print(f"{cls.__name__:<9} {ms:7.2f} ms/tile  = {ms / decode:5.1f}x the decode")


if __name__ == "__main__":
    main()
