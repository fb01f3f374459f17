"""Example custom losses, to copy when writing your own (see ``conf/loss/custom_example.yaml``).

A custom loss is whatever the ``fn`` node of a loss config instantiates to, as long as it can be called
as ``fn(output, target) -> scalar tensor``:

- ``output``: the outcome head's raw output, float (batch, width): logits over the classes for a
  ``categorical`` outcome, (batch, 1) predictions for a ``linear`` one, (batch, 1) risk scores for ``cox``.
- ``target``: the encoded labels, float (batch, n_targets): the class index (stored as a float) for
  ``categorical``, the value for ``linear``, (time, event) for ``cox``.

A plain function with extra arguments becomes such a callable with ``_partial_: true``; a class (an
``nn.Module`` or any object with ``__call__``) is instantiated with its arguments. ``loss.kind`` tells
the workbench which kind of outcome the loss fits, hence how labels are encoded and evaluated.
"""

from __future__ import annotations

import torch
from torch import nn


def focal_loss(output: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Focal loss (Lin et al., 2017) for a categorical head: cross-entropy down-weighting easy tiles.

    Each tile's cross-entropy is multiplied by ``(1 - p_true) ** gamma``; ``gamma=0`` is plain
    cross-entropy.

    Args:
        output: (batch, classes) logits.
        target: (batch, 1) class indices stored as floats.
        gamma: Focusing strength (>= 0).
    """
    labels = target[:, 0].long()
    log_p = nn.functional.log_softmax(output, dim=1).gather(1, labels[:, None])[:, 0]
    return (-((1 - log_p.exp()) ** gamma) * log_p).mean()
