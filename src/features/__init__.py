"""Feature bags for multiple-instance learning: tile shards → any encoder → one HDF5 bag per slide.

* :mod:`src.features.encoders` — encoder presets (``conf/encoder/``): build a model and its input transform,
  check that a local weights file is there, hash it;
* :mod:`src.features.bags` — :class:`FeatureBags`: the bag folder (keyed by tile settings, encoder and
  weights hash), extraction of missing bags (built in memory, temp name + rename), reading a bag;
* :mod:`src.features.integrity` — each bag's ``features_sha256``, finite values and attribute types, verified
  once per bag and process; damaged bags are extracted again;
* :mod:`src.features.files` — writing a bag folder's files atomically, with errors naming the file (full disk);
* :mod:`src.features.datamodule` — :class:`BagDataModule`: padded, masked batches of bags for a fold.
"""
