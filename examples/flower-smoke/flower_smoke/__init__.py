"""A tiny numpy-only Flower app: federated linear regression on synthetic per-partition data."""
