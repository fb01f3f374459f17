"""GPU training throughput: our training step through Lightning against a bare PyTorch loop, and the loader's supply.

    python benchmarks/gpu_throughput.py [--batch 256] [--steps 50] [--workers N]

ResNet-50 (timm, random init) at 224 px, ``16-mixed``, ``channels_last``, Adam, cross-entropy on 2 classes.
Runs only where CUDA is present; elsewhere it prints why it skipped and exits 0 (``--smoke`` runs every stage
tiny on the CPU in float32 instead, to check the script, not to measure). It prints, each measured in this run:

1. **demand**: a bare PyTorch loop (autocast fp16 + GradScaler) on uint8 batches already on the GPU, through
   the same device-side transform (flips, rotations, scaling: ``src.data.transforms.BatchTransform``): the
   tiles/s the model can take.
2. **bare vs Lightning**: the same loop, and the real training step (``TileModule`` through
   ``pytorch_lightning.Trainer``, ``precision=16-mixed``, ``on_after_batch_transfer`` doing the transform),
   both fed by the same DataLoader over the same in-memory uint8 tiles. Goal: Lightning ≥ 0.9x bare.
3. **loader vs demand**: the real tile loader (``TileDataset`` over a JPEG shard written once under
   ``data/bench/gpu_shard``, augment ``xyrj`` placed as a CUDA fit places it: ``jpeg_on=auto`` puts ``j`` on
   the GPU with the rest; batches collated as the data module does, ``src.data.collate``) alone, in tiles/s,
   against the demand; then a Lightning fit on it, with the share of the wall time the training loop waited
   for the next batch (goal < 10 %). Published anchor: 2,470 img/s for ResNet-50 AMP on an A100 (NVIDIA).
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch.utils.data import DataLoader, Dataset, RandomSampler
from torchvision.io import encode_jpeg

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.stain_normalizers import generated_tile  # noqa: E402
from src.config import compose  # noqa: E402
from src.data.augment import Augment  # noqa: E402
from src.data.collate import TileCollate  # noqa: E402
from src.data.tiles import TileDataset, TileIndex  # noqa: E402
from src.data.transforms import BatchTransform, tile_transform  # noqa: E402
from src.losses.outcome_losses import build_losses  # noqa: E402
from src.outcomes.categorical import CategoricalOutcome  # noqa: E402
from src.training.module import TileModule  # noqa: E402

SHARD_DIR = REPO_ROOT / "data" / "bench" / "gpu_shard"
A100_ANCHOR = 2470  # img/s, ResNet-50 AMP training on an A100


def build_net(backbone: str, seed: int = 0) -> torch.nn.Module:
    """Our TileNet with a timm backbone, 2 classes, random init (same weights for a given seed)."""
    torch.manual_seed(seed)
    cfg = compose(["model=resnet18", f"model.backbone.name={backbone}"])
    return instantiate(cfg.model)(outcome_sizes=[2], n_clinical=0)


def make_tiles(n: int, px: int) -> torch.Tensor:
    """``n`` distinct H&E-like uint8 tiles."""
    return torch.stack([generated_tile(px, seed) for seed in range(n)])


class MemoryTiles(Dataset):
    """Tiles held in memory, as TileDataset items (uint8 image, target, clinical, slide, tile)."""

    def __init__(self, tiles: torch.Tensor, length: int) -> None:
        self.tiles, self.length = tiles, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        return {
            "image": self.tiles[i % len(self.tiles)],
            "target": torch.tensor([float(i % 2)]),
            "clinical": torch.zeros(0),
            "slide": 0,
            "tile": i,
        }


class TimedLoader(DataLoader):
    """A DataLoader that adds up the time its consumer waits in ``next()`` (``waited``, seconds)."""

    waited = 0.0

    def __iter__(self):
        inner, loader = super().__iter__(), self

        class Timed:
            def __iter__(self):
                return self

            def __len__(self) -> int:
                return len(inner)

            def __next__(self):
                start = time.perf_counter()
                try:
                    return next(inner)
                finally:
                    loader.waited += time.perf_counter() - start

        return Timed()


def loader(data: Dataset, args, timed: bool = False) -> DataLoader:
    """Random batches (with replacement: exactly ``warmup + steps`` of them, whatever the dataset's size)."""
    cls = TimedLoader if timed else DataLoader
    draws = args.batch * (args.warmup + args.steps)
    return cls(
        data,
        batch_size=args.batch,
        sampler=RandomSampler(data, replacement=True, num_samples=draws, generator=torch.Generator().manual_seed(0)),
        num_workers=args.workers,
        persistent_workers=args.workers > 0,
        pin_memory=args.device == "cuda",
        collate_fn=TileCollate(channels_last=args.device == "cuda"),  # as FoldDataModule for this device
        drop_last=True,
        prefetch_factor=4 if args.workers else None,
    )


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def bare_loop(net, batches, args, augment: Augment) -> float:
    """Tiles/s of a plain PyTorch training loop over ``batches`` (an iterable of TileDataset-style dicts)."""
    device = args.device
    net.to(device).to(memory_format=torch.channels_last).train()
    transform = BatchTransform(augment=augment, scale=net.scale, channels_last=True)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device, enabled=device == "cuda")
    loss_fn = torch.nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(0)
    start, done = None, 0
    for step, batch in enumerate(batches):
        if step == args.warmup:
            sync(device)
            start = time.perf_counter()
        images = transform(batch["image"].to(device, non_blocking=True), generator)
        target = batch["target"].to(device, non_blocking=True)[:, 0].long()
        with torch.autocast(device, dtype=torch.float16, enabled=device == "cuda"):
            loss = loss_fn(net(images, None, scaled=True)[0].float(), target)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        done += len(target) if start is not None else 0
        if step + 1 >= args.warmup + args.steps:
            break
    sync(device)
    return done / (time.perf_counter() - start)


class Throughput(pl.Callback):
    """Tiles/s of the training batches after ``warmup`` steps."""

    def __init__(self, warmup: int, loader: DataLoader) -> None:
        self.warmup, self.loader, self.start, self.tiles, self.elapsed = warmup, loader, None, 0, 0.0

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            sync(module.device.type)
            self.start = time.perf_counter()
            self.loader.waited = 0.0  # count the waits of the timed steps only

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if self.start is not None:
            self.tiles += len(batch["target"])

    def on_train_epoch_end(self, trainer, module) -> None:
        sync(module.device.type)
        self.elapsed = time.perf_counter() - self.start


class Data(pl.LightningDataModule):
    """What TileModule reads from its data module: the normalizer and the training augmentations."""

    def __init__(self, loader: DataLoader, augment: Augment) -> None:
        super().__init__()
        self.loader, self.augment, self.normalizer = loader, augment, None

    def train_dataloader(self) -> DataLoader:
        return self.loader


def lightning_fit(net, data_loader: DataLoader, args, augment: Augment) -> tuple[float, float]:
    """(tiles/s, share of the wall time spent waiting for batches) of TileModule through Lightning."""
    outcome = CategoricalOutcome.from_column(pd.DataFrame({"label": ["a", "b"]}), "label")
    module = TileModule(
        net,
        [outcome],
        build_losses(compose([]).loss, ["label"]),
        optimizer=functools.partial(torch.optim.Adam, lr=1e-4),
        channels_last=True,
    )
    meter = Throughput(args.warmup, data_loader)
    trainer = pl.Trainer(
        accelerator="gpu" if args.device == "cuda" else "cpu",
        devices=1,
        precision="16-mixed" if args.device == "cuda" else "32-true",
        max_epochs=1,
        limit_train_batches=args.warmup + args.steps,
        callbacks=[meter],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        benchmark=True,
    )
    trainer.fit(module, datamodule=Data(data_loader, augment))
    waited = getattr(data_loader, "waited", 0.0)
    return meter.tiles / meter.elapsed, waited / meter.elapsed


def write_shard(tiles: torch.Tensor, path: Path) -> TileIndex:
    """A tar of JPEG tiles (as extraction writes them), indexed for TileDataset; written once."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with tarfile.open(tmp, "w") as tar:
            for i, tile in enumerate(tiles):
                data = encode_jpeg(tile, quality=90).numpy().tobytes()
                info = tarfile.TarInfo(f"{i:06d}.jpg")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        tmp.replace(path)
    offsets, sizes = [], []
    with tarfile.open(path) as tar:
        for member in tar:
            offsets.append(member.offset_data)
            sizes.append(member.size)
    n = len(offsets)
    return TileIndex(
        ["bench"], [path], np.zeros(n, np.int32), np.asarray(offsets), np.asarray(sizes), np.zeros((n, 2), np.int64)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=50, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first (cuDNN autotuning)")
    parser.add_argument("--workers", type=int, default=max(1, min(14, (os.cpu_count() or 2) - 2)))
    parser.add_argument("--tiles", type=int, default=4096, help="distinct tiles in the JPEG shard")
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--tile-px", type=int, default=224)
    parser.add_argument("--smoke", action="store_true", help="tiny CPU run of every stage (checks the script)")
    args = parser.parse_args()
    if args.smoke:
        args.device, args.backbone, args.tile_px, args.batch = "cpu", "resnet18", 32, 4
        args.steps, args.warmup, args.workers, args.tiles = 3, 1, 0, 64
        print("--smoke: a tiny CPU run to check the script; the numbers below are not measurements")
    elif not torch.cuda.is_available():
        print("gpu_throughput: skipped, no CUDA device here (run it on a GPU machine; --smoke checks the script)")
        return
    else:
        args.device = "cuda"
        torch.backends.cudnn.benchmark = True
        print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, {args.workers} loader workers")
    precision = "16-mixed" if args.device == "cuda" else "32-true"
    print(f"{args.backbone} @ {args.tile_px} px, batch {args.batch}, {precision}, channels_last, {args.steps} steps")
    augment = Augment("xyrj").placed(args.device)  # augment.jpeg_on=auto, as the data module resolves it
    tiles = make_tiles(min(args.tiles, 512), args.tile_px)

    # 1. demand: batches already on the device
    resident = [
        {"image": tiles[i : i + args.batch].to(args.device), "target": torch.rand(args.batch, 1).round()}
        for i in range(0, len(tiles) - args.batch + 1, args.batch)
    ]
    cycle = (resident[i % len(resident)] for i in range(args.warmup + args.steps))
    demand = bare_loop(build_net(args.backbone), cycle, args, augment)
    print(f"demand (bare loop, batches on the device): {demand:8,.0f} tiles/s (A100 anchor {A100_ANCHOR:,})")

    # 2. bare loop vs Lightning, same loader over the same in-memory tiles
    memory = MemoryTiles(tiles, args.batch * (args.warmup + args.steps))
    bare = bare_loop(build_net(args.backbone), loader(memory, args), args, augment)
    lightning, _ = lightning_fit(build_net(args.backbone), loader(memory, args), args, augment)
    print(f"bare PyTorch loop (in-memory loader):      {bare:8,.0f} tiles/s")
    ratio = lightning / bare
    print(f"TileModule through Lightning (same loader): {lightning:7,.0f} tiles/s = {ratio:.2f}x bare (goal ≥ 0.9x)")

    # 3. the real loader (JPEG shard, xyrj) against the demand
    index = write_shard(make_tiles(args.tiles, args.tile_px), SHARD_DIR / f"{args.tile_px}px-{args.tiles}.tar")
    shard = TileDataset(index, np.zeros((1, 1), np.float32), transform=tile_transform(augment, None, train=True))
    supply_loader = loader(shard, args)
    start, n = None, 0
    for step, batch in enumerate(supply_loader):
        if step == args.warmup:
            start = time.perf_counter()
        n += len(batch["tile"]) if start is not None else 0
        if step + 1 >= args.warmup + args.steps:
            break
    supply = n / (time.perf_counter() - start)
    share = supply / demand
    where = "j on the device" if augment.jpeg_device else "JPEG + j"
    print(f"real loader alone ({args.workers} workers, {where}): {supply:8,.0f} tiles/s = {share:.2f}x the demand")
    rate, waiting = lightning_fit(build_net(args.backbone), loader(shard, args, timed=True), args, augment)
    waited = 100 * waiting
    print(
        f"Lightning on the real loader: {rate:8,.0f} tiles/s, waiting for data {waited:.1f} % of the time (goal < 10%)"
    )


if __name__ == "__main__":
    main()
