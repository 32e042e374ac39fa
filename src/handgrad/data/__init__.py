"""Data: the built-in and IDX datasets, CSV and NPZ tables, and fitted scaling."""
