"""The benchmark suite: gradtx beside Optax and torch.optim; run it with `python3 dev.py bench`."""
