"""Parameter checks shared by the host, the gateware's constructors and the tools: one wording
("Lane count must be a positive integer, not 0") everywhere."""

from __future__ import annotations

import numpy as np

__all__ = ["check_count", "check_device"]


def check_count(name: str, value: object, low: int = 1) -> int:
    """``value`` as an ``int`` if it is an integer (Python or NumPy, not a bool) of at least
    ``low``; else ``ValueError``: "<name> must be a positive integer, not <value>" (or "an
    integer of at least <low>")."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        what = "a positive integer" if low == 1 else f"an integer of at least {low}"
        raise ValueError(f"{name} must be {what}, not {value!r}")
    return int(value)


def check_device(dev: object, *, layer_for: str | None = None):
    """``dev`` if it is a ``DeviceConfig`` (else ``TypeError``) with a layer engine when
    ``layer_for`` names a block that needs one (else ``ValueError``)."""
    from .device_config import DeviceConfig

    if not isinstance(dev, DeviceConfig):
        raise TypeError(f"dev must be a DeviceConfig, not {dev!r}")
    if layer_for is not None and dev.layer is None:
        raise ValueError(f"{layer_for} needs a DeviceConfig with a layer (LayerConfig)")
    return dev
