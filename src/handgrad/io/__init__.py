"""Files: atomic writes, bounded safe reading, and the model-file format."""
