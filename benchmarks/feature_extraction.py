"""Feature extraction through the real code (FeatureBags: shard → decode → transform → encoder → HDF5) against a
bare ``model(batch)`` loop over the same tiles already decoded in memory.

    python benchmarks/feature_extraction.py [--tiles 256] [--arch resnet50] [--tile-px 224] [--batch-size 32]

Writes a synthetic shard of JPEG tiles under a temporary folder; the encoder is a randomly initialised timm
model (no weights file). Prints tiles/s of both and their ratio (goal >= 0.8x).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.data.dataset import Dataset
from src.data.tiles import TileDataset
from src.extraction.shards import ShardWriter, shard_dir
from src.features.bags import FeatureBags
from src.features.encoders import Encoder
from src.slides.tile_settings import TileSettings


def write_shard(root: Path, settings: TileSettings, n_tiles: int) -> Dataset:
    rng = np.random.default_rng(0)
    folder = shard_dir(root / "shards", settings)
    with ShardWriter(folder, "S1") as writer:
        for i in range(n_tiles):
            tile = rng.integers(0, 255, (settings.tile_px, settings.tile_px, 3), np.uint8)
            tile = cv2.GaussianBlur(tile, (9, 9), 3)  # JPEG-realistic content, not pure noise
            writer.add(cv2.imencode(".jpg", tile, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes(), i * 10, 0)
        writer.finish(settings.to_dict(), n_tiles, mpp=0.5, extract_px=settings.tile_px)
    table = pd.DataFrame({"patient": ["P1"], "slide": ["S1"]})
    return Dataset(table, tiles=settings, shards_dir=root / "shards")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiles", type=int, default=256)
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--tile-px", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings = TileSettings(tile_px=args.tile_px, tile_um=args.tile_px // 2)
        dataset = write_shard(root, settings, args.tiles)
        node = {"_target_": "src.features.encoders.timm_encoder", "name": args.arch, "pooling": "avg"}
        import timm

        width = timm.create_model(args.arch, pretrained=False, num_classes=0).num_features
        encoder = Encoder(args.arch, width, node, transform={"resize": 224, "center_crop": 224})
        bags = FeatureBags(encoder, root=str(root / "features"), batch_size=args.batch_size)
        model, transform = encoder.build().to(bags.device), encoder.transform().to(bags.device)

        # baseline: the same tiles, decoded up front, through a bare model(batch) loop
        tiles = TileDataset(dataset.tile_index(), np.zeros((1, 0), np.float32))
        images = torch.stack([tiles.read_image(i) for i in range(len(tiles))]).to(bags.device)
        with torch.inference_mode():
            model(transform(images[: args.batch_size]))  # warm-up (both sides run after it)
            start = time.perf_counter()
            for i in range(0, len(images), args.batch_size):
                model(transform(images[i : i + args.batch_size])).float().cpu()
            bare = time.perf_counter() - start

        start = time.perf_counter()
        bags.ensure(dataset)  # shard → decode → transform → encoder → HDF5, temp name + rename
        ours = time.perf_counter() - start
    print(f"device {bags.device}, {args.arch}, {args.tiles} tiles of {args.tile_px} px, batch {args.batch_size}")
    print(f"bare model(batch) loop on decoded tiles: {args.tiles / bare:.1f} tiles/s ({bare:.2f} s)")
    print(f"FeatureBags.ensure (decode + encode + write): {args.tiles / ours:.1f} tiles/s ({ours:.2f} s)")
    print(f"ratio ours / bare: {bare / ours:.2f}x (goal >= 0.8x)")


if __name__ == "__main__":
    main()
