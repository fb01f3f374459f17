"""Infrastructure every layer may use: files that are complete under their final name or absent."""
