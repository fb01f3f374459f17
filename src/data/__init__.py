"""Data: annotations, the Dataset and its labels, clinical inputs, splits, tile datasets, the fold data modules."""
