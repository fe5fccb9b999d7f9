"""Torch-free readers of run folders: tables, results.md, plots, `progprune report`, `compare` and sweep summaries."""
