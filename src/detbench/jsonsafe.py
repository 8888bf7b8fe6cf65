"""Strict JSON out of measurement results: JSON has no NaN or inf, so non-finite floats become null.

A dataclass instance (a record of ``detbench.schema``) becomes an object of its fields in their
order, each under its field's ``key`` metadata when it has one (JSON keys such as ``mAP50-95`` are
not Python names), and a field marked ``optional`` is left out while it is None.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np


def json_key(f: dataclasses.Field) -> str:
    """The JSON key of a record's field: its ``key`` metadata, else its name."""
    return str(f.metadata.get("key", f.name))


def json_safe(obj: Any) -> Any:
    """``obj`` with non-finite floats as None, numpy scalars as Python ones, paths as strings and
    records (dataclass instances) as objects."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return json_safe(obj.item())
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            json_key(f): json_safe(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if not (f.metadata.get("optional") and getattr(obj, f.name) is None)
        }
    return obj


def dumps(obj: Any) -> str:
    """Indented strict JSON of ``json_safe(obj)`` (raises rather than writing NaN)."""
    return json.dumps(json_safe(obj), indent=2, allow_nan=False)
