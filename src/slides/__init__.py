"""Slides: the reader interface and backends (tiffslide, OpenSlide), MPP, tile grid, tissue masks."""
