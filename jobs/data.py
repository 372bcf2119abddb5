"""The digits dataset: scikit-learn's bundled `load_digits`, no download, no torch.

1797 8x8 images, raw pixels 0..16, split once with a fixed seed into 1437 training
and 360 held-out rows, so every job agrees on what "held-out" means. Kept apart
from `jobs.model` so that jobs which only need the data (core) do not pay for
importing torch in every worker process.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

NUM_FEATURES = 64
NUM_CLASSES = 10
PIXEL_MAX = 16.0
# Fixed, not configurable: train, infer and tune must agree on the held-out rows.
SPLIT_SEED = 0
HELD_OUT_FRACTION = 0.2


@dataclass(frozen=True)
class DigitsSplit:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_all() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits: float32 pixels (n, 64) in 0..16 and int64 labels."""
    digits = load_digits()
    return digits.data.astype(np.float32), digits.target.astype(np.int64)


def load_split() -> DigitsSplit:
    x, y = load_all()
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=HELD_OUT_FRACTION, random_state=SPLIT_SEED, stratify=y)
    return DigitsSplit(x_train, y_train, x_test, y_test)
