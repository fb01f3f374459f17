"""Random draws that are a function of (seed, epoch): a resumed fit draws what an uninterrupted one would.

A sampler that keeps one random stream for the whole fit (``torch.Generator`` seeded once) cannot be resumed
at epoch ``k`` without replaying epochs ``1..k-1``. The samplers here instead draw epoch ``e`` from a stream
seeded with ``(seed, e)``. Lightning calls ``set_epoch(e)`` (0-based) before each training epoch; without
it (a plain ``DataLoader``) each pass over the sampler moves to the next epoch by itself.
"""

from __future__ import annotations

import numpy as np

SEED_BITS = 63  # torch seeds are 64-bit signed; numpy's legacy seed takes 32 bits (see seed_for)


def seed_for(seed: int, epoch: int, bits: int = SEED_BITS) -> int:
    """A seed for ``epoch`` derived from ``seed`` (a hash, so nearby seeds and epochs give unrelated streams)."""
    (value,) = np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1, dtype=np.uint64)
    return int(value) >> (64 - bits)


class EpochSeeded:
    """Mixin for samplers: ``epoch`` (0-based) of the next pass, set by ``set_epoch`` or advanced per pass."""

    seed: int
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw the next pass as epoch ``epoch`` (0-based; Lightning calls this before each epoch)."""
        self.epoch = int(epoch)

    def next_epoch_seed(self) -> int:
        """The seed of the pass that starts now; the following pass is the next epoch."""
        value = seed_for(self.seed, self.epoch)
        self.epoch += 1
        return value
