"""Feature rows as a model can take them, or a 4xx that says why not.

The request schema already guarantees finite JSON numbers; here the rows must also fit the
experiment: at most ``router.max_batch_rows`` rows of ``n_features`` values (at most
``router.max_features``), and every value must be representable in the arms' input dtype
(``feature_dtype``, from the MLflow signatures) and within ``router.max_abs_feature`` (by
default the float32 range, because many models compute in float32 whatever their signature
says). A value that would overflow inside a model makes it raise, and a raising arm is
counted against the arm's guardrails: refusing it here keeps a client from rolling an arm
back with inputs no model can take.

Example:
    >>> from serve_app.config import ExperimentConfig, RouterConfig
    >>> arms = [{"name": "a", "model_uri": "/m"}, {"name": "b", "model_uri": "/m"}]
    >>> experiment = ExperimentConfig.model_validate(
    ...     {"name": "e", "arms": arms, "n_features": 2, "feature_dtype": "int64"})
    >>> check_features([[1, 2]], experiment, RouterConfig()).dtype
    dtype('float64')
    >>> check_features([[1, 2.5]], experiment, RouterConfig())
    Traceback (most recent call last):
    ...
    serve_app.errors.InvalidRequest: features[0][1] is 2.5; experiment 'e' takes int64 features \
(whole numbers)
"""

from __future__ import annotations

import numpy as np

from serve_app.config import ExperimentConfig, RouterConfig
from serve_app.errors import InvalidRequest, PayloadTooLarge


def dtype_bounds(dtype: str, max_abs: float) -> tuple[float, float, bool]:
    """``(low, high, integral)`` that values must satisfy for ``dtype`` and the cap."""
    numpy_dtype = np.dtype(dtype)
    if numpy_dtype.kind in "iu":
        info = np.iinfo(numpy_dtype)
        return max(float(info.min), -max_abs), min(float(info.max), max_abs), True
    limit = min(float(np.finfo(numpy_dtype).max), max_abs)
    return -limit, limit, False


def check_features(
    rows: list[list[float]] | np.ndarray, experiment: ExperimentConfig, limits: RouterConfig
) -> np.ndarray:
    """The rows (JSON lists, or a 2-D array a binary protocol decoded) as a float64 array,
    checked against the experiment and the limits.

    Raises:
        PayloadTooLarge: too many rows or values per row (413).
        InvalidRequest: ragged rows, the wrong width, or a value the arms cannot take (422).
    """
    if len(rows) > limits.max_batch_rows:
        raise PayloadTooLarge(
            f"features has {len(rows)} rows; at most {limits.max_batch_rows} per request",
            field="features",
        )
    width = experiment.n_features or len(rows[0])
    if width > limits.max_features:
        raise PayloadTooLarge(
            f"features rows have {width} values; at most {limits.max_features}",
            field="features",
        )
    for index, row in enumerate(rows):
        if len(row) != width or len(row) == 0:
            raise InvalidRequest(
                f"features[{index}] has {len(row)} values; experiment "
                f"{experiment.name!r} expects rows of {width} numbers",
                field=f"features[{index}]",
            )
    features = np.asarray(rows, dtype=np.float64)
    dtype = experiment.feature_dtype or "float64"
    low, high, integral = dtype_bounds(dtype, limits.max_abs_feature)
    bad = (features < low) | (features > high)
    if integral:
        bad |= features != np.round(features)
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        value = features[row, column]
        shown = f"{value:g}" if not value.is_integer() or abs(value) >= 1e16 else f"{value:.0f}"
        what = "whole numbers" if integral and low <= value <= high else f"{low:g}..{high:g}"
        raise InvalidRequest(
            f"features[{row}][{column}] is {shown}; experiment {experiment.name!r} takes "
            f"{dtype} features ({what})",
            field=f"features[{row}][{column}]",
        )
    return features
