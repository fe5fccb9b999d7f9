"""What a run leaves behind besides its tables: status.json and the rules for reusing a run folder."""
