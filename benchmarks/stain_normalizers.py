"""Stain normalizers: batched (B×C×H×W) tiles/s against today's per-tile implementation, on the same core.

    python benchmarks/stain_normalizers.py [--tile-px 299] [--batch 32] [--rounds 3]

One CPU thread for both (as in a data-loading worker). The tiles are 299 px crops of the real tiles in
``../shared/data/tiles`` (generated H&E-like tiles when that folder is absent), fitted on one of them.
Prints ms/tile and tiles/s of each, the batched/per-tile ratio (goal ≥ 10x), and, where CUDA is present,
the batched tiles/s on the GPU (Slideflow's torch normalizers: 3,329 Reinhard / 881 Macenko img/s).
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
TARGET = "tissue-level0-4302-10273-4814-10785.png"


def generated_tile(px: int, seed: int) -> torch.Tensor:
    """An H&E-like tile: haematoxylin and eosin blobs on a pale background (Beer-Lambert)."""
    g = torch.Generator().manual_seed(seed)
    stains = torch.tensor([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11]]).T  # (3, 2) H and E
    conc = torch.nn.functional.interpolate(torch.rand(1, 2, px // 16, px // 16, generator=g), size=(px, px))[0]
    conc = conc * torch.tensor([1.5, 1.0])[:, None, None] + 0.05 * torch.rand(2, px, px, generator=g)
    od = torch.einsum("cs,shw->chw", stains, conc)
    return (255 * torch.exp(-od)).round().clamp(0, 255).to(torch.uint8)


def tiles(px: int, n: int) -> tuple[torch.Tensor, list[torch.Tensor], str]:
    """(target, n tiles, where they come from)."""
    if (TILES / TARGET).exists():
        found = [read_image(p) for p in sorted(TILES.glob("*.png"))]
        crops = [image[:, :px, :px].contiguous() for image in found if min(image.shape[1:]) >= px]
        return read_image(TILES / TARGET), [crops[i % len(crops)] for i in range(n)], f"{len(crops)} real tiles"
    return generated_tile(px, 0), [generated_tile(px, i + 1) for i in range(n)], "generated tiles"


def best_seconds(fn, rounds: int) -> float:
    fn()  # warm up (tables, allocator)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tile-px", type=int, default=299)
    parser.add_argument("--batch", type=int, default=32, help="tiles per batch (and per per-tile round)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds; the fastest is reported")
    args = parser.parse_args()
    torch.set_num_threads(1)
    target, sources, origin = tiles(args.tile_px, args.batch)
    batch = torch.stack(sources)
    jpeg = encode_jpeg(sources[0], quality=95)
    decode = best_seconds(lambda: decode_jpeg(jpeg), 20) * 1000
    print(f"{args.batch} tiles of {args.tile_px} px ({origin}), one CPU thread; JPEG decode {decode:.2f} ms/tile")
    print(f"{'method':<9} {'per-tile':>17} {'batched':>17} {'ratio':>7}  {'max diff':>8}")
    for cls in (Reinhard, Macenko):
        normalizer = cls().fit([target])
        per_tile = best_seconds(lambda n=normalizer: [n(tile) for tile in sources], args.rounds) / args.batch
        batched = best_seconds(lambda n=normalizer: n.normalize(batch), args.rounds) / args.batch
        diff = (normalizer.normalize(batch).int() - torch.stack([normalizer(t) for t in sources]).int()).abs()
        print(
            f"{cls.__name__:<9} {per_tile * 1000:6.2f} ms {1 / per_tile:5.0f}/s "
            f"{batched * 1000:6.2f} ms {1 / batched:5.0f}/s {per_tile / batched:6.2f}x  {int(diff.max()):>4} levels"
        )
        if torch.cuda.is_available():
            on_gpu = batch.cuda()

            def gpu_round(n=normalizer, images=on_gpu) -> None:
                n.normalize(images)
                torch.cuda.synchronize()

            seconds = best_seconds(gpu_round, args.rounds) / args.batch
            print(f"{'':<9} CUDA ({torch.cuda.get_device_name()}): {1 / seconds:,.0f} tiles/s batched")


if __name__ == "__main__":
    main()
