"""Heatmap of a 40000 x 40000 px slide with ``model=tiny``: ``python predict.py`` end to end, against CLAM.

    python benchmarks/heatmap.py [--size 40000] [--threads 2]

1. Writes (once, cached under ``data/bench/``) the synthetic 0.25 mpp SVS of ``benchmarks/extraction.py``
   (its writer, ~40 % tissue).
2. Makes an untrained ``model=tiny`` checkpoint for 256 px / 128 µm tiles with Otsu (the model's weights do
   not change the cost; a real checkpoint of ours has the same layout).
3. Runs the prediction behind ``predict.py`` (``src.inference.run``) on the slide: live tiles, model,
   ``tile_predictions.parquet``, ``heatmap.npz`` and the heatmap PNG; prints the wall-clock time, the CPU
   time (this machine is shared: CPU time is what carries over), and the split by stage as seen by the main
   thread (tile reading overlaps the model on the reading threads, so "reading" is the time spent waiting).
4. Prints the ratio against the goal (30 s) and against CLAM's reported 45-60 min per slide (CLAM #298, on a
   V100, with overlap 0.5 and feature re-extraction: not the same work, quoted for scale).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from benchmarks.extraction import BENCH_DIR, ensure_slide  # noqa: E402
from src.config import compose  # noqa: E402
from src.slides.tile_settings import TileSettings  # noqa: E402
from src.training.checkpoint import PARAMS_KEY  # noqa: E402

GOAL_SECONDS = 30.0
CLAM_SECONDS = 45 * 60.0  # CLAM #298: 45-60 min per slide


def tiny_checkpoint(path: Path, settings: TileSettings) -> Path:
    """An untrained ``model=tiny`` two-class checkpoint with our checkpoint layout."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = compose(["model=tiny"])
    net = instantiate(cfg.model)(outcome_sizes=[2], n_clinical=0)
    params = {
        "outcomes": [{"name": "tumor_type", "kind": "categorical", "classes": ["adeno", "squamous"], "event": None}],
        "input_header": [],
        "clinical_encoder": {"columns": [], "numeric": {}, "categories": {}},
        "tile_px": settings.tile_px,
        "tile_um": settings.tile_um,
        "tile_settings": settings.to_dict(),
        "norm_fit": None,
        "hp": OmegaConf.to_container(cfg, resolve=True),
    }
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, PARAMS_KEY: json.loads(json.dumps(params, default=str))}, path)
    return path


def cpu_seconds() -> float:
    """User + system CPU time of this process (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=40000, help="slide side in level-0 px")
    parser.add_argument("--threads", type=int, default=2, help="threads reading tiles")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=torch.get_num_threads(),
        help="intra-op threads of the model (default: torch's, as predict.py; 1 measures its CPU time exactly)",
    )
    parser.add_argument("--no-shards", action="store_true", help="skip the shard JPEG round trip (as_shards=false)")
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads)
    settings = TileSettings(tile_px=256, tile_um=128)  # Otsu QC: the default
    slide = ensure_slide(args.size)
    checkpoint = tiny_checkpoint(BENCH_DIR / "heatmap-tiny.ckpt", settings)
    out = BENCH_DIR / "heatmap-run"
    import tiffslide  # noqa: F401 - imported once, as a long prediction imports it once

    from src.inference import run

    cfg = compose(
        [
            f"model_path={checkpoint}",
            f"slides=[{slide}]",
            f"outdir={out}",
            f"threads={args.threads}",
            f"torch_threads={args.torch_threads}",  # predict sets its threads itself (src.infra.processes)
            f"as_shards={not args.no_shards}",
        ],
        config_name="predict",
    )
    start, cpu = time.perf_counter(), cpu_seconds()
    failed = run(cfg)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    if failed:
        raise SystemExit("the prediction failed; see above")
    tiles = int(pd.read_csv(out / "report.csv").tiles.iloc[0])
    print(
        f"\nslide {slide.name}: {args.size}x{args.size} px, 256 px / 128 um tiles, model=tiny, "
        f"{args.threads} reading thread(s), {args.torch_threads} model thread(s), as_shards={not args.no_shards}"
    )
    print(f"heatmap in {seconds:.1f} s wall-clock for {tiles} tiles = {tiles / seconds:.0f} tiles/s")
    print(f"  CPU time {cpu:.1f} s ({cpu / seconds:.2f} cores busy on average)")
    print(
        f"ratio vs goal ({GOAL_SECONDS:.0f} s): {GOAL_SECONDS / seconds:.2f}x "
        f"({'MET' if seconds <= GOAL_SECONDS else 'NOT MET'}); vs CLAM's 45 min per slide (#298): "
        f"{CLAM_SECONDS / seconds:.0f}x"
    )
    print(f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; outputs in {out}")


if __name__ == "__main__":
    main()
