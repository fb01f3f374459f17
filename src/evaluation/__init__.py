"""Evaluation: prediction tables, metric and plot primitives, the results log."""
