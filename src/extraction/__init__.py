"""Tile extraction: slide → per-slide WebDataset shards, with resume, report and thumbnails."""
