"""The derivation tooling: print a network's derivation, diagnose a hand-written gradient."""
