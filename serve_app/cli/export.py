"""Writing a decision log to a file: Parquet (nested columns as they are) or CSV (nested
columns as JSON text), chosen by the file's suffix."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

COLUMNS = (
    "decision_key",
    "experiment",
    "revision",
    "arm",
    "propensity",
    "issued_at",
    "received_at",
    "reward",
    "label",
    "metrics",
    "features",
    "predictions",
    "context",
)
NESTED = ("label", "metrics", "features", "predictions", "context")
"""Columns that hold JSON values (CSV writes them as JSON text)."""
FORMATS = {".parquet": "parquet", ".csv": "csv"}


def file_format(path: Path) -> str:
    """``parquet`` or ``csv`` from the suffix.

    Raises:
        ValueError: any other suffix.
    """
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise ValueError(f"{path}: the file name must end in .parquet or .csv") from None


def write_decisions(rows: Iterable[Mapping[str, Any]], path: Path) -> int:
    """Write logged decisions (``GET /experiments/{name}/decisions`` rows) to ``path``;
    returns the rows written."""
    import pandas as pd

    kind = file_format(path)
    records = [{column: row.get(column) for column in COLUMNS} for row in rows]
    frame = pd.DataFrame.from_records(records, columns=list(COLUMNS))
    if kind == "csv":
        for column in NESTED:
            frame[column] = [None if v is None else json.dumps(v) for v in frame[column]]
        frame.to_csv(path, index=False)
    else:
        # one JSON-typed column per nested value keeps mixed label types (int, str) legal
        for column in ("label", "metrics", "predictions"):
            frame[column] = [None if v is None else json.dumps(v) for v in frame[column]]
        frame.to_parquet(path, index=False)
    return len(frame)
