"""Files: atomic writes and bounded reads (:mod:`~handgrad.io.files`), and the model-file format built on them."""
