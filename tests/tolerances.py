"""The error bounds that the numerical tests' tolerances follow from.

A tolerance in these tests is of one of two kinds:

- exact by construction: integer counts; the same function run on the same arrays in one process
  (bit-identical); arithmetic with no transcendental function, in the same order; overflow to
  inf, underflow to exactly 0, 1 / (1 + 0) = 1 and exp(0) = 1;
- a bound derived here, never a number one CPU printed. NumPy picks its exp / log kernels per CPU
  (AVX-512, AVX2, the x86-64 baseline, NEON or the platform's libm) and their last bits differ,
  so ``.ci/run`` runs the numerical tests a second time with the SIMD targets above the baseline
  switched off.

The derivation shared with ``gradcheck`` (the ulp tables, gamma_n, the two-layer net's running
error analysis ``two_layer_bounds``) lives in :mod:`mnist_twolayer.error_bounds`, which states
the conventions (eps, u, first order in eps); it is re-exported here with the helpers only the
tests need.
"""

from __future__ import annotations

import numpy as np

from mnist_twolayer.error_bounds import (  # noqa: F401  (re-exported for the test modules)
    EPS32,
    EPS64,
    NUMPY_ULP,
    SIGMOID_D2,
    SIGMOID_D3,
    TORCH_ULP,
    gamma,
    numpy_rel,
    rel,
    relative_error_bound,
    sigmoid_rel,
    two_layer_bounds,
)

LIBM_ULP = 1  # Python's math.exp / math.log: the platform's libm
LIBM_REL = rel(LIBM_ULP)


def sigmoid_ulp(dtype: np.dtype | type = np.float64) -> int:
    """ulp between sigmoid(x) and its correctly rounded value: exp's N ulp plus the add's 0.5
    make at most (N + 1) eps relative, which the reciprocal keeps (< 2 (N + 1) ulp of the
    result, whose ulp may be eps / 2 relative), plus its own 0.5 and the reference's 0.5."""
    return 2 * NUMPY_ULP[np.dtype(dtype).name]["exp"] + 3


def central_difference_error(h: float, third_derivative: float | np.ndarray,
                             value_error: float | np.ndarray) -> float | np.ndarray:
    """Bound on |(f(x + h) - f(x - h)) / 2h - f'(x)| when |f'''| <= third_derivative within h of
    x and each computed value of f is off by at most value_error (count the rounding of x +- h
    there too): the truncation h^2 |f'''| / 6 of the order-2 formula plus 2 value_error / 2h."""
    return h * h * third_derivative / 6 + value_error / h


def assert_within(actual: np.ndarray | float, desired: np.ndarray | float,
                  bound: np.ndarray | float) -> None:
    """|actual - desired| <= bound elementwise (``bound`` may be an array); NaN fails."""
    actual, desired = np.asarray(actual, np.float64), np.asarray(desired, np.float64)
    bound = np.broadcast_to(bound, actual.shape)
    failed = ~(np.abs(actual - desired) <= bound)
    if failed.any():
        where = tuple(int(i) for i in np.argwhere(failed)[0])
        raise AssertionError(f"{failed.sum()} of {failed.size} elements outside their bound, "
                             f"first at {where}: actual {actual[where]!r}, desired "
                             f"{desired[where]!r}, bound {bound[where]:.3g}")
