"""The model-file format (its atomic writing and safe reading build on :mod:`handgrad.files`)."""
