"""Torch-level pruning mechanics: masks that stay enforced, and selection of what to remove."""
