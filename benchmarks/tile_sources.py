"""Training-loader throughput of each tile source on the same slide, against a bare decode of the same JPEG bytes.

    python benchmarks/tile_sources.py [--size 40000] [--workers 2] [--batches 40] [--quick]

1. Writes (once, cached under ``data/bench/``) the synthetic 0.25 mpp SVS of ``benchmarks/extraction.py``
   (``--quick``: a 12000 px one) and links it under two slide names (two classes: a fold needs both).
2. Extracts its shards (``dataset=shards``, ``shards_stream``) and caches its tile locations (``dataset=wsi``)
   with 256 px / 128 µm tiles, Otsu and the default grayspace filter; the location cache's first computation is
   timed (later runs start at once).
3. For each source, builds the real fold data module (``FoldDataModule`` from the composed config:
   ``dataset=<source>``, ``augment=default`` = ``xyrj``, ``dataloader.num_workers=2``, batch size 64) and times
   ``--batches`` training batches from ``train_dataloader()`` after two warm-up batches (the loader processes
   started): tiles/s.
4. Bare decode: the shard's JPEG bytes of as many tiles, read into memory first, decoded with the loader's own
   decoder (``decode_tile``) in ``--workers`` processes, nothing else: the ceiling of a JPEG-shard loader.
5. Also times the shard loader with ``augment=none``: per-tile CPU augmentation (``j`` re-encodes half the tiles
   as JPEG) is most of the gap to the bare decode, and moves to the batch on the device (issue 12 part 4);
   and the shard loader of a CUDA fit (``trainer=gpu``, ``xyrj`` with ``augment.jpeg_on=device``): what the
   workers do when training on a GPU (read, decode, batch in channels-last order; ``j x y r`` then run on the
   batch on the device, not timed here). Without CUDA its pinned memory is skipped (PyTorch warns, silenced).
6. Prints tiles/s and the ratios against the goals: shards ≥ 0.9× bare decode, wsi ≥ 0.5× shards,
   streamed ≥ 0.8× shards. The machine is shared: the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
import warnings
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from benchmarks.extraction import BENCH_DIR, ensure_slide  # noqa: E402
from src.config import compose  # noqa: E402
from src.data.datamodule import FoldDataModule  # noqa: E402
from src.data.dataset import Dataset  # noqa: E402
from src.data.sources import tile_source  # noqa: E402
from src.data.sources.base import raise_failures  # noqa: E402
from src.data.tiles import TileIndex, decode_tile  # noqa: E402

SOURCES = ("shards", "wsi", "shards_stream")
GOALS = {"shards": ("bare decode", 0.9), "wsi": ("shards", 0.5), "shards_stream": ("shards", 0.8)}
QUICK_SIZE = 12000
BATCH_SIZE = 64
GPU_FIT = ("trainer=gpu", "augment.jpeg_on=device")  # the loader of a CUDA fit (j on the device)


def project(slide: Path) -> tuple[Path, Path]:
    """A two-slide project (one file under two names and two classes): its slides folder and annotations."""
    root = BENCH_DIR / f"tile_sources-{slide.stem}"
    slides = root / "slides"
    slides.mkdir(parents=True, exist_ok=True)
    for name in ("bench-a", "bench-b"):
        link = slides / f"{name}.svs"
        if not link.is_symlink():
            link.symlink_to(slide)
    annotations = root / "annotations.csv"
    pd.DataFrame(
        {"patient": ["pa", "pb"], "slide": ["bench-a", "bench-b"], "tumor_type": ["squamous", "adenocarcinoma"]}
    ).to_csv(annotations, index=False)
    return root, annotations


def config(root: Path, annotations: Path, source: str, workers: int, augment: str = "default", *extra: str):
    """The composed training config of ``source`` on the bench project (``augment=default``: xyrj), + ``extra``."""
    return compose(
        [
            f"dataset={source}",
            f"project.slides_dir={root / 'slides'}",
            f"project.annotations={annotations}",
            f"project.shards_dir={root / 'shards'}",
            "project.demo=null",
            "tiles.tile_px=256",
            "tiles.tile_um=128",
            f"augment={augment}",
            f"dataloader.num_workers={workers}",
            f"batch_size={BATCH_SIZE}",
            f"dataset.extraction_workers={workers}",
            f"paths.output_dir={root / 'outputs'}",
            *extra,
        ]
    )


def bench_dataset(cfg) -> Dataset:
    """The bench project's Dataset for ``cfg``, its tile data prepared (shards / locations made if missing)."""
    from omegaconf import OmegaConf

    dataset = Dataset(
        cfg.project.annotations,
        slides_dir=cfg.project.slides_dir,
        tiles=OmegaConf.to_container(cfg.tiles, resolve=True),
        shards_dir=cfg.project.shards_dir,
        backend=cfg.dataset.backend,
    )
    raise_failures(tile_source(cfg.dataset).prepare(dataset, workers=int(cfg.dataset.extraction_workers)))
    return dataset


def loader_rate(cfg, dataset: Dataset, batches: int) -> tuple[float, int]:
    """Tiles/s of the real training loader (after two warm-up batches), and the training tile count."""
    labels, _ = dataset.labels("tumor_type")
    module = FoldDataModule(cfg, labels, dataset, None, where="bench")
    module.setup("fit")
    loader = module.train_dataloader()
    iterator = iter(loader)
    for _ in range(2):
        next(iterator)
    tiles, start = 0, time.perf_counter()
    for _ in range(batches):
        try:
            batch = next(iterator)
        except StopIteration:  # an epoch ended: the next one (persistent workers)
            iterator = iter(loader)
            batch = next(iterator)
        tiles += len(batch["image"])
    rate = tiles / (time.perf_counter() - start)
    del iterator, loader
    return rate, len(module.train.data)


_BLOBS: list[bytes] = []  # the bare decode's JPEG bytes, set before its processes fork (inherited, not sent)


def _decode_part(part: tuple[int, int]) -> int:
    """Decode the blobs ``part[0]::part[1]`` of :data:`_BLOBS` (in a forked process, which already has them)."""
    first, step = part
    chunk = _BLOBS[first::step]
    for data in chunk:
        decode_tile(data)
    return len(chunk)


def bare_decode_rate(dataset: Dataset, n_tiles: int, workers: int) -> float:
    """Tiles/s decoding the shards' JPEG bytes (read into memory first) in ``workers`` processes.

    The bytes are in the processes' memory before the clock starts (forked after they are read), so only the
    decoding is timed: the ceiling of a loader that must also read, batch and send its tiles.
    """
    index = TileIndex.from_shards(dataset.shard_dir, dataset.slides())
    picks = np.random.default_rng(0).choice(len(index), size=min(n_tiles, len(index)), replace=False)
    _BLOBS.clear()
    for tile in picks:
        with open(index.paths[index.slide_idx[tile]], "rb") as handle:
            handle.seek(int(index.offset[tile]))
            _BLOBS.append(handle.read(int(index.size[tile])))
    parts = [(i, workers) for i in range(workers)]
    with mp.get_context("fork").Pool(workers) as pool:
        pool.map(_decode_part, [(i, len(_BLOBS)) for i in range(workers)])  # processes started and warm
        start = time.perf_counter()
        done = sum(pool.map(_decode_part, parts))
        return done / (time.perf_counter() - start)


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=40000, help="slide side in level-0 px")
    parser.add_argument("--workers", type=int, default=2, help="loader processes (and bare-decode processes)")
    parser.add_argument("--batches", type=int, default=40, help=f"training batches of {BATCH_SIZE} timed per source")
    parser.add_argument("--quick", action="store_true", help=f"a {QUICK_SIZE} px slide and 15 batches (~2 min)")
    args = parser.parse_args()
    size, batches = (QUICK_SIZE, min(args.batches, 15)) if args.quick else (args.size, args.batches)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    slide = ensure_slide(size)
    root, annotations = project(slide)

    rates, prepared = {}, {}
    for source in SOURCES:
        cfg = config(root, annotations, source, args.workers)
        start = time.perf_counter()
        dataset = bench_dataset(cfg)
        prepared[source] = time.perf_counter() - start
        rates[source], n_tiles = loader_rate(cfg, dataset, batches)
        print(f"{source:>14}: {rates[source]:7.0f} tiles/s through the training loader", flush=True)
    cfg = config(root, annotations, "shards", args.workers, augment="none")
    unaugmented, _ = loader_rate(cfg, bench_dataset(cfg), batches)
    print(
        f"{'shards, no aug':>14}: {unaugmented:7.0f} tiles/s (augment=none: the loader without the CPU augmentations)"
    )
    cfg = config(root, annotations, "shards", args.workers, "default", *GPU_FIT)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*pin_memory.*no accelerator is found")
        on_gpu, _ = loader_rate(cfg, bench_dataset(cfg), batches)
    print(f"{'shards, on GPU':>14}: {on_gpu:7.0f} tiles/s ({' '.join(GPU_FIT)}: j x y r on the device, not timed)")
    bare = bare_decode_rate(
        bench_dataset(config(root, annotations, "shards", args.workers)), batches * 64, args.workers
    )
    print(f"{'bare decode':>14}: {bare:7.0f} tiles/s ({args.workers} processes, JPEG bytes in memory)")

    print(
        f"\nslide {slide.name}: {size}x{size} px at 0.25 mpp, {n_tiles} training tiles (2 slide names), "
        f"256 px / 128 um, augment xyrj, {args.workers} loader processes, batches of {BATCH_SIZE}, "
        f"{batches} timed per source"
    )
    print("tile data prepared in: " + ", ".join(f"{s} {t:.1f} s" for s, t in prepared.items()) + " (0 s = cached)")
    reference = {"bare decode": bare, **rates}
    for source, (against, goal) in GOALS.items():
        ratio = rates[source] / reference[against]
        print(
            f"{source:>14} / {against:<11} = {ratio:4.2f}x (goal >= {goal}x: {'MET' if ratio >= goal else 'NOT MET'})"
        )
    print(
        f"{'shards, no aug':>14} / bare decode = {unaugmented / bare:4.2f}x (what is left once the augmentations "
        "run on the batch, on the device: issue 12 part 4)"
    )
    print(
        f"{'shards, on GPU':>14} / bare decode = {on_gpu / bare:4.2f}x (the loader of a CUDA fit, augment xyrj: "
        "the workers only read, decode and batch)"
    )
    print(f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
