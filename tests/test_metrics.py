"""metrics.py: the confusion matrix and per-class precision and recall, against plain counts."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_twolayer.metrics import confusion_matrix, precision_recall


def test_confusion_matrix_matches_a_plain_count() -> None:
    rng = np.random.default_rng(1)
    t = rng.integers(0, 10, 5000, dtype=np.uint8)
    p = np.where(rng.random(5000) < 0.9, t, rng.integers(0, 10, 5000))
    expected = np.zeros((10, 10), dtype=np.int64)
    np.add.at(expected, (t.astype(int), p), 1)
    cm = confusion_matrix(t, p)
    assert cm.dtype == np.int64 and cm.shape == (10, 10)
    np.testing.assert_array_equal(cm, expected)
    assert cm.sum() == 5000


def test_confusion_matrix_has_a_row_and_column_for_classes_that_never_occur() -> None:
    cm = confusion_matrix(np.array([0, 1, 1]), np.array([1, 1, 0]), num_classes=4)
    np.testing.assert_array_equal(cm, [[0, 1, 0, 0],
                                       [1, 1, 0, 0],
                                       [0, 0, 0, 0],
                                       [0, 0, 0, 0]])


def test_confusion_matrix_rejects_bad_labels() -> None:
    with pytest.raises(ValueError, match=r"^y_true holds labels outside 0\.\.9$"):
        confusion_matrix(np.array([0, 10]), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"^y_pred holds labels outside 0\.\.2$"):
        confusion_matrix(np.array([0, 1]), np.array([-1, 1]), num_classes=3)
    with pytest.raises(ValueError, match="3 labels but y_pred has 2"):
        confusion_matrix(np.array([0, 1, 2]), np.array([0, 1]))


def test_precision_recall_and_zero_division() -> None:
    cm = np.array([[5, 1, 0],
                   [2, 3, 0],
                   [0, 0, 0]])  # class 2: never present, never predicted
    precision, recall = precision_recall(cm)
    np.testing.assert_allclose(precision, [5 / 7, 3 / 4, 0.0])
    np.testing.assert_allclose(recall, [5 / 6, 3 / 5, 0.0])
    assert np.isfinite(precision).all() and np.isfinite(recall).all()


def test_a_class_predicted_or_present_once_gets_its_precision_and_recall() -> None:
    # class 0 is predicted once (precision 1/1) and present twice; class 1 the other way
    precision, recall = precision_recall(np.array([[1, 1],
                                                   [0, 2]]))
    np.testing.assert_array_equal(precision, [1.0, 2 / 3])
    np.testing.assert_array_equal(recall, [1 / 2, 1.0])
    precision, recall = precision_recall(np.array([[1, 0],
                                                   [1, 2]]))
    np.testing.assert_array_equal(precision, [1 / 2, 1.0])
    np.testing.assert_array_equal(recall, [1.0, 2 / 3])
