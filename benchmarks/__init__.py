"""The benchmark suite: gradtx beside Optax and torch.optim (issue 8); run it with `python3 dev.py bench`."""
