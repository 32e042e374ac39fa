"""The training loop, its history, callbacks and the divergence check."""
