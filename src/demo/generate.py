"""The demo slide project: synthetic SVS slides and an annotations table, from a seed.

``DemoProject(root).ensure()`` writes ``root/slides/{slide}.svs`` and ``root/annotations.csv``
(only when missing or made with other parameters) and returns the annotations path. The
labels truly drive the pixels (see `src.demo.render`), so the demo's models learn something.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from src.demo.render import random_look, render_slide
from src.demo.svs import write_svs

__all__ = ["ANNOTATION_COLUMNS", "DemoProject", "make_annotations", "write_svs"]

GENERATOR_VERSION = 4  # bump when the output changes, so old demo folders are rebuilt
MARKER = ".demo_complete.json"
ANNOTATION_COLUMNS = [
    "patient",
    "slide",
    "site",
    "dataset",
    "tumor_type",
    "tumor_cellularity",
    "os_time",
    "os_event",
    "age",
    "stage",
]
SITES = ("site_A", "site_B", "site_C", "site_D")
# Per-site optical-density multipliers (R, G, B): a mild stain shift per hospital.
SITE_STAIN = {
    "site_A": (1.00, 1.00, 1.00),
    "site_B": (1.10, 0.94, 1.00),
    "site_C": (0.92, 1.06, 1.08),
    "site_D": (1.04, 1.02, 0.90),
}
TUMOR_TYPES = ("adenocarcinoma", "squamous")
STAGE_PROBS = {"adenocarcinoma": (0.5, 0.35, 0.15), "squamous": (0.15, 0.35, 0.5)}


def make_annotations(seed: int = 0, n_patients: int = 26) -> pd.DataFrame:
    """Draw the demo's patients and slides.

    Per patient: site (4 sites, round-robin over a shuffle), tumor_type (alternating within
    each site, so balanced and present at every site), dataset (``holdout`` for ~20 % of each
    tumour type, else ``train``), tumor_cellularity (10-90 %), age (40-85), stage (I-III,
    correlated with tumour type) and survival: hazard grows with cellularity, squamous type
    and (weakly) age; 70 % events, the rest censored at a random earlier time. About a
    quarter of patients have two slides, sharing every patient column.

    Args:
        seed: Random seed.
        n_patients: Number of patients (>= 8 so every site sees both tumour types).

    Returns:
        The annotations, columns `ANNOTATION_COLUMNS`, one row per slide.
    """
    if n_patients < 8:
        raise ValueError(f"n_patients must be >= 8, got {n_patients}")
    rng = np.random.default_rng([seed, 0])
    patients = [f"P{i + 1:03d}" for i in range(n_patients)]
    order = rng.permutation(n_patients)
    site = np.empty(n_patients, dtype=object)
    tumor = np.empty(n_patients, dtype=object)
    for rank, idx in enumerate(order):
        site[idx] = SITES[rank % len(SITES)]
        tumor[idx] = TUMOR_TYPES[(rank // len(SITES) + rank) % 2]
    dataset = np.full(n_patients, "train", dtype=object)
    for kind in TUMOR_TYPES:
        members = np.flatnonzero(tumor == kind)
        holdout = rng.choice(members, max(1, round(0.2 * len(members))), replace=False)
        dataset[holdout] = "holdout"
    cellularity = np.round(rng.uniform(10, 90, n_patients), 1)
    age = rng.integers(40, 86, n_patients)
    stage = [rng.choice(["I", "II", "III"], p=STAGE_PROBS[t]) for t in tumor]
    squamous = (tumor == "squamous").astype(float)
    # Log-hazard: strong enough in the visible features (cellularity = nucleus density, squamous type) that a
    # Cox model can learn it from ~17 training patients (oracle fold c-index ~0.8 on the default demo).
    risk = 3.0 * (cellularity - 50) / 40 + 1.5 * squamous + 0.25 * (age - 62) / 12
    # Weibull (shape 1.5) proportional hazards; median 24 months at risk 0.
    shape = 1.5
    hazard = np.log(2) / 24**shape * np.exp(risk + rng.normal(0, 0.2, n_patients))
    event_time = (-np.log(rng.random(n_patients)) / hazard) ** (1 / shape)
    event = np.zeros(n_patients, dtype=bool)
    event[rng.permutation(n_patients)[: round(0.7 * n_patients)]] = True
    os_time = np.where(event, event_time, event_time * rng.uniform(0.2, 0.95, n_patients))
    os_time = np.maximum(np.round(os_time, 1), 0.5)
    two_slides = set(rng.choice(n_patients, round(n_patients / 4), replace=False).tolist())
    rows = []
    for i, patient in enumerate(patients):
        for k in range(2 if i in two_slides else 1):
            rows.append(
                {
                    "patient": patient,
                    "slide": f"{patient}-{k + 1}",
                    "site": site[i],
                    "dataset": dataset[i],
                    "tumor_type": tumor[i],
                    "tumor_cellularity": float(cellularity[i]),
                    "os_time": float(os_time[i]),
                    "os_event": int(event[i]),
                    "age": int(age[i]),
                    "stage": stage[i],
                }
            )
    return pd.DataFrame(rows, columns=ANNOTATION_COLUMNS)


class DemoProject:
    """A generated slide project under `root`, deterministic from `seed`.

    Args:
        root: Folder of the project (``slides/``, ``annotations.csv``).
        seed: Random seed; the same seed gives identical files.
        n_patients: Number of patients (~1.25 slides each).
        slide_px: Side of every slide in level-0 pixels.
        mpp: Microns per level-0 pixel (20x at 0.5).
    """

    def __init__(
        self,
        root: str | Path,
        seed: int = 0,
        n_patients: int = 26,
        slide_px: int = 1536,
        mpp: float = 0.5,
    ) -> None:
        self.root = Path(root)
        self.seed = int(seed)
        self.n_patients = int(n_patients)
        self.slide_px = int(slide_px)
        self.mpp = float(mpp)

    @property
    def slides_dir(self) -> Path:
        """Folder of the generated ``.svs`` slides."""
        return self.root / "slides"

    @property
    def annotations_path(self) -> Path:
        """The generated annotations CSV."""
        return self.root / "annotations.csv"

    @property
    def params(self) -> dict:
        """Everything the output depends on (recorded in the completion marker)."""
        return {
            "version": GENERATOR_VERSION,
            "seed": self.seed,
            "n_patients": self.n_patients,
            "slide_px": self.slide_px,
            "mpp": self.mpp,
        }

    def is_complete(self) -> bool:
        """Whether the marker matches these parameters and every file is present."""
        try:
            marker = json.loads((self.root / MARKER).read_text())
            annotations = pd.read_csv(self.annotations_path)
        except (OSError, ValueError):
            return False
        if marker.get("params") != self.params:
            return False
        return all((self.slides_dir / f"{s}.svs").is_file() for s in annotations["slide"])

    def ensure(self) -> Path:
        """Generate the project unless complete; return the annotations path."""
        if not self.is_complete():
            self.generate()
        return self.annotations_path

    def generate(self) -> Path:
        """(Re)generate every file; the marker is written last. Returns the annotations path."""
        start = time.perf_counter()
        (self.root / MARKER).unlink(missing_ok=True)
        if self.slides_dir.exists():
            shutil.rmtree(self.slides_dir)
        self.slides_dir.mkdir(parents=True)
        annotations = make_annotations(self.seed, self.n_patients)
        for index, row in enumerate(annotations.itertuples()):
            rng = np.random.default_rng([self.seed, 1, index])
            look = random_look(rng, row.tumor_type, row.tumor_cellularity, SITE_STAIN[row.site])
            image = render_slide(rng, self.slide_px, look)
            write_svs(self.slides_dir / f"{row.slide}.svs", image, mpp=self.mpp)
        annotations.to_csv(self.annotations_path, index=False)
        marker = {
            "params": self.params,
            "seconds": round(time.perf_counter() - start, 2),
        }
        (self.root / MARKER).write_text(json.dumps(marker, indent=2))
        return self.annotations_path
