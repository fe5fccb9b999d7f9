"""Stages of a run (train, prune, finetune, dense_long, evaluate): plain functions that skip themselves when done."""
