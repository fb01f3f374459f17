"""Tile-level c-index speed: ours (Fenwick tree over risk ranks) against lifelines' concordance_index.

Run: ``python benchmarks/c_index.py [n_patients] [tiles_per_patient]``. Prints both times and the ratio
(lifelines / ours; > 1 means ours is faster) and checks that the values agree.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lifelines.utils import concordance_index as lifelines_c_index

from src.evaluation.metrics import concordance_index


def main(n_patients: int = 300, tiles_per_patient: int = 1000) -> None:
    rng = np.random.default_rng(0)
    patient_time = rng.exponential(24, n_patients).round(1)
    patient_event = rng.random(n_patients) < 0.6
    times = np.repeat(patient_time, tiles_per_patient)
    events = np.repeat(patient_event, tiles_per_patient).astype(int)
    risk = -np.log(times + 1) + rng.normal(size=len(times))
    start = time.perf_counter()
    ours = concordance_index(times, risk, events)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    reference = lifelines_c_index(times, -risk, events)
    reference_s = time.perf_counter() - start
    assert abs(ours - reference) < 1e-9, (ours, reference)
    print(f"{len(times)} tiles, {n_patients} patients: c-index {ours:.6f} (lifelines {reference:.6f})")
    print(f"ours {ours_s:.2f} s, lifelines {reference_s:.2f} s, ratio lifelines/ours = {reference_s / ours_s:.1f}x")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
