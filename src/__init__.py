"""The workbench: slides → tiles → shards → tile models, validated by patient (see README)."""
