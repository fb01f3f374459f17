"""Tile samplers: balanced weights for Slideflow's strategies, and event-aware batches for Cox outcomes."""
