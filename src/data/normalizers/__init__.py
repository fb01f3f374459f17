"""Stain normalizers (Slideflow's ``normalizer`` / ``normalizer_source``): Reinhard and Macenko in torch.

Selected with the ``normalizer`` config group (``none``, ``reinhard``, ``macenko``); fitted per model on a
reference tile or on a sample of its training tiles; applied on the fly to training and validation
tiles before any augmentation; the fit is saved in ``params.json`` (``norm_fit``) and the checkpoints.
A new method is one subclass of :class:`StainNormalizer` and one YAML in ``conf/normalizer/``.
"""

from src.data.normalizers.base import StainNormalizer, from_fit, read_image
from src.data.normalizers.macenko import Macenko
from src.data.normalizers.reinhard import Reinhard

__all__ = ["Macenko", "Reinhard", "StainNormalizer", "from_fit", "read_image"]
