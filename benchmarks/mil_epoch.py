"""One MIL training epoch on CPU: 200 bags × 5,000 tiles of 1024-d float16 features (HDF5 bag files).

    python benchmarks/mil_epoch.py [--bags 200] [--tiles 5000] [--features 1024] [--model attention_mil]

Writes the bags once under a temporary folder (2 GB at the defaults), then times one epoch through the real
BagDataset (``bag_size`` 512 random tiles per bag) + pad_bags + the model's forward/backward with Adam, batches
of 64 bags (Slideflow's defaults). Prints the epoch's seconds (goal: well under a minute) and, as the named
baseline, the same epoch on bags already in memory (no HDF5 reads).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.features.datamodule import BagDataset, pad_bags
from src.models.mil.attention_mil import AttentionMIL
from src.models.mil.clam_sb import ClamSB
from src.models.mil.mean_pool import MeanPoolMLP
from src.models.mil.transmil import TransMIL

MODELS = {"attention_mil": AttentionMIL, "clam_sb": ClamSB, "transmil": TransMIL, "mean_pool": MeanPoolMLP}


class InMemoryBags(BagDataset):
    def __init__(self, bags: list[torch.Tensor], targets: np.ndarray, bag_size: int) -> None:
        super().__init__([[]] * len(bags), targets, np.zeros((len(bags), 0), np.float32), bag_size)
        self.bags = bags

    def read(self, bag: int) -> torch.Tensor:
        return self.bags[bag]


def epoch(model: torch.nn.Module, data: BagDataset, batch_size: int) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, collate_fn=pad_bags, drop_last=True)
    start = time.perf_counter()
    for batch in loader:
        (logits,) = model(batch["features"], batch["mask"])
        loss = torch.nn.functional.cross_entropy(logits, batch["target"][:, 0].long())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bags", type=int, default=200)
    parser.add_argument("--tiles", type=int, default=5000)
    parser.add_argument("--features", type=int, default=1024)
    parser.add_argument("--bag-size", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--model", default="attention_mil", choices=sorted(MODELS))
    args = parser.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 2, (args.bags, 1)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i in range(args.bags):
            path = Path(tmp) / f"S{i:04d}.h5"
            with h5py.File(path, "w") as bag:
                bag.create_dataset(
                    "features", data=rng.standard_normal((args.tiles, args.features), np.float32).astype(np.float16)
                )
            files.append([path])
        model = MODELS[args.model](n_features=args.features, outcome_sizes=[2])
        on_disk = epoch(
            model, BagDataset(files, targets, np.zeros((args.bags, 0), np.float32), args.bag_size), args.batch_size
        )
        memory = [
            BagDataset(files, targets, np.zeros((args.bags, 0), np.float32)).read(i).half() for i in range(args.bags)
        ]
    in_memory = epoch(model, InMemoryBags(memory, targets, args.bag_size), args.batch_size)
    shape = f"{args.bags} bags x {args.tiles} tiles x {args.features}-d"
    print(
        f"{args.model}: {shape}, bag_size {args.bag_size}, batch {args.batch_size}, {torch.get_num_threads()} threads"
    )
    print(f"one epoch from HDF5 bag files: {on_disk:.1f} s (goal: well under 60 s)")
    print(f"same epoch, bags in memory (baseline): {in_memory:.1f} s; ratio {in_memory / on_disk:.2f}x")


if __name__ == "__main__":
    main()
