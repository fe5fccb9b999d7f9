"""Optimizers, losses and learning-rate schedules: how a model is trained, built from typed config."""
