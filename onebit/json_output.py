"""JSON for machines: the commands' ``--json`` output never holds ``Infinity`` or ``NaN``."""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["dumps"]


def dumps(obj: Any) -> str:
    """``obj`` as strict JSON text; every float that is not finite becomes ``null``."""
    return json.dumps(_finite(obj), allow_nan=False)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
