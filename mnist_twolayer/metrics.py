"""Numbers that judge a classifier beyond its accuracy: the confusion matrix and the per-class
precision and recall read from it."""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """Counts ``cm[true, predicted]`` as an int64 (num_classes, num_classes) array."""
    t = np.asarray(y_true).ravel()
    p = np.asarray(y_pred).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} labels but y_pred has {p.size}")
    for name, labels in (("y_true", t), ("y_pred", p)):
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"{name} holds labels outside 0..{num_classes - 1}")
    flat = t.astype(np.int64) * num_classes + p.astype(np.int64)
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes,
                                                                          num_classes)


def precision_recall(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class precision (columns) and recall (rows) of a confusion matrix.

    A class never predicted (or never present) gets 0.0 rather than NaN, so the numbers stay
    valid JSON and sort sensibly.
    """
    cm = np.asarray(cm, dtype=np.float64)
    hits = np.diag(cm)
    predicted = cm.sum(axis=0)
    actual = cm.sum(axis=1)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, actual, out=np.zeros_like(hits), where=actual > 0)
    return precision, recall
