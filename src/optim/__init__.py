"""Optimisation helpers: learning-rate schedules (partial callables of the optimizer)."""
