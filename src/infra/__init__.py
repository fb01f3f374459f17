"""Infrastructure every layer may use: atomic files, temporary files, locks, processes and DDP ranks."""
