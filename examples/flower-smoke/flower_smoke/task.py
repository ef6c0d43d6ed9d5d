"""Numpy-only 'model': linear regression y = X @ w + b, synthetic data per partition."""

import numpy as np

TRUE_W = np.array([2.0, -1.0, 0.5])
TRUE_B = 0.3
N_FEATURES = TRUE_W.shape[0]


def init_params() -> list[np.ndarray]:
    return [np.zeros(N_FEATURES, dtype=np.float64), np.zeros(1, dtype=np.float64)]


def load_partition(partition_id: int, num_partitions: int, n: int = 64):
    """Deterministic synthetic data derived from partition-id (no downloads)."""
    rng = np.random.default_rng(1000 + partition_id * 7919 + num_partitions)
    x = rng.normal(size=(n, N_FEATURES))
    y = x @ TRUE_W + TRUE_B + 0.01 * rng.normal(size=n)
    return x, y


def mse(params, x, y) -> float:
    w, b = params
    return float(np.mean((x @ w + b[0] - y) ** 2))


def train(params, x, y, steps: int, lr: float):
    w, b = params[0].copy(), params[1].copy()
    n = len(y)
    for _ in range(steps):
        err = x @ w + b[0] - y
        w -= lr * (2.0 / n) * (x.T @ err)
        b -= lr * (2.0 / n) * np.sum(err)
    return [w, b]
