"""`progprune sensitivity`: each prunable unit pruned alone to each level, and a per-unit budget derived from that."""
