"""The network: layers, losses, the Sequential model, the objective and gradient checking."""
