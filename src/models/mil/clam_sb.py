"""CLAM-SB (Lu et al., Nat. Biomed. Eng. 2021), our own implementation: gated attention + instance clustering.

The bag is pooled with gated attention as in :mod:`src.models.mil.attention_mil`. During training, an
auxiliary instance loss sharpens the attention: for each bag, the ``k_sample`` most and least attended tiles
are classified by the true class's instance classifier as positive and negative (and, with ``subtyping``, the
most attended ones as negative by the other classes' classifiers), with a smooth SVM loss replaced by
cross-entropy. It applies to the first outcome when its head has several classes (its targets are class
indices); other outcomes train the attention through the bag loss only.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from src.models.mil.attention_mil import AttentionMIL


class ClamSB(AttentionMIL):
    """Single-branch CLAM (``model=clam_sb``): :class:`~src.models.mil.attention_mil.AttentionMIL` + instance loss.

    Args:
        k_sample: Most / least attended tiles per bag used by the instance loss.
        instance_weight: Weight of the instance loss (CLAM's ``1 - bag_weight``, 0.3 by default).
        subtyping: Also push the other classes' classifiers to call the top tiles negative (CLAM's subtyping).
        **kwargs: :class:`~src.models.mil.attention_mil.AttentionMIL`'s arguments (``attention_width``) and
            :class:`~src.models.mil.base.MilModel`'s.
    """

    def __init__(self, k_sample: int = 8, instance_weight: float = 0.3, subtyping: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_classes = int(self.outcome_sizes[0])
        self.instance_classifiers = nn.ModuleList(nn.Linear(self.hidden_width, 2) for _ in range(self.n_classes))
        self.k_sample, self.instance_weight, self.subtyping = int(k_sample), float(instance_weight), subtyping

    def auxiliary_loss(self, features: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Instance clustering loss × ``instance_weight`` (0 when the first outcome is not a class).

        Args:
            features: (batch, tiles, n_features) padded bags.
            mask: (batch, tiles) real tiles.
            targets: (batch, n_targets) targets of the first outcome (class index in column 0).
        """
        if self.n_classes < 2 or self.instance_weight == 0:
            return features.new_zeros(())
        h = self.embed(features)
        attention = self.attend(h, mask)
        losses = []
        for b in range(len(features)):
            real = mask[b].nonzero().squeeze(1)
            k = min(self.k_sample, len(real) // 2)
            if k == 0:
                continue
            order = attention[b, real].argsort(descending=True)
            top, bottom = h[b, real[order[:k]]], h[b, real[order[-k:]]]
            label = int(targets[b, 0])
            for c, classifier in enumerate(self.instance_classifiers):
                if c == label:
                    logits = classifier(torch.cat([top, bottom]))
                    truth = torch.cat([torch.ones(k), torch.zeros(k)]).long().to(logits.device)
                elif self.subtyping:
                    logits = classifier(top)
                    truth = torch.zeros(k, dtype=torch.long, device=logits.device)
                else:
                    continue
                losses.append(F.cross_entropy(logits, truth))
        if not losses:
            return features.new_zeros(())
        return self.instance_weight * torch.stack(losses).mean()
