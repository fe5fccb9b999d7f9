"""What a run leaves behind: the results.json schema (torch-free, schema.py), status.json and folder reuse rules."""
