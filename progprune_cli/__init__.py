"""progprune: a command-line experiment runner for progressive neural-network pruning."""

__version__ = "0.1.0"
