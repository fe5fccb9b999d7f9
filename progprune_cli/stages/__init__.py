"""Stages of a run (train, prune, finetune, dense_long, evaluate): resumable steps, each skipping itself when done."""

from progprune_cli.registry import import_all


def register_all() -> None:
    """Import every module of this package: each stage module registers its stage, which the runner looks up."""
    import_all(__name__, __path__)
