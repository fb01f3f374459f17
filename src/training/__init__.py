"""Training: the LightningModule, the fold trainer (Trainer API), callbacks, loggers, checkpoints."""
