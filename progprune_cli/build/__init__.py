"""Builders: turn typed config into data, model, strategy, schedule and optimizer objects."""
