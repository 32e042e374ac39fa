"""Optimizers (each declaring its state), their compiled updates, and learning-rate schedules."""
