"""Losses per outcome kind (cross-entropy, regression, Cox) and their resolution from the loss config."""
