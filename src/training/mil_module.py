"""The LightningModule for multiple-instance learning: the same training and evaluation as TileModule, on bags.

A batch holds padded bags (``features``, ``mask``, ``target``, ``clinical``, ``bag``; see
``src.features.datamodule``). The prediction table has one row per bag, at the bag's level (slide or patient);
patient predictions of slide bags are the mean over the patient's slides. There is no tile level.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from src.evaluation.predictions import tile_table
from src.training.module import TileModule


class MilModule(TileModule):
    """Weakly supervised MIL model: ``net(features, mask, clinical)`` → one output per outcome.

    Same arguments as :class:`~src.training.module.TileModule`. A net with an ``auxiliary_loss(features, mask,
    first_outcome_targets)`` method (CLAM's instance clustering) has that loss added during training.
    """

    index_key = "bag"

    @property
    def table_level(self) -> str:
        """The level of a bag: ``slide`` or ``patient`` (``dataset.aggregation_level``)."""
        return str(getattr(self.val_index, "level", "slide"))  # a BagIndex (src.features.datamodule)

    def forward(
        self, features: torch.Tensor, clinical: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """One output per outcome for a batch of padded bags (``clinical`` second, as TileModule's)."""
        return self.net(features, mask, clinical)

    def batch_outputs(self, batch: dict) -> list[torch.Tensor]:
        """The outputs for one batch of bags."""
        return self(batch["features"], batch["clinical"], mask=batch["mask"])

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """TileModule's loss, plus the net's auxiliary loss when it has one (logged as ``train/auxiliary_loss``)."""
        loss = super().training_step(batch, batch_idx)
        auxiliary = getattr(self.net, "auxiliary_loss", None)
        if auxiliary is not None:
            extra = auxiliary(batch["features"], batch["mask"], self.layout.split(batch["target"])[0])
            size = len(batch["target"])
            self.log("train/auxiliary_loss", extra, on_step=False, on_epoch=True, batch_size=size, sync_dist=True)
            loss = loss + extra
        return loss

    def prediction_table(self, bags: np.ndarray, outputs: list[torch.Tensor]) -> pd.DataFrame:
        """Bag prediction table (one row per validation bag, with ``n_tiles``)."""
        assert self.val_index is not None  # validation runs only with a validation index
        names, patients, parts, n_tiles = self.val_index.rows(bags)
        table = tile_table(self.outcomes, outputs, parts, names, patients)
        if self.table_level == "patient":
            table = table.drop(columns="slide")
        table.insert(2 if self.table_level == "slide" else 1, "n_tiles", n_tiles)
        return table
