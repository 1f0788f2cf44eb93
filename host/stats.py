"""What an ``Accelerator`` counted since its last ``reset_stats``: ``acc.stats``.

Two kinds of figures:

- the device's LAYER commands: their cycles, the cycles the array computed and the array's
  ideal cycles for the same work (so ``utilization = ideal / cycles``), tokens through layers;
- the link: every public call (``linear``, ``mlp``, ``load_layer``, ``layer``, ``decode``,
  ``load_model``, ``logits``, ``generate``) appends a ``CallStats`` with the bytes it wrote to
  the transport and read from it (whole frames, retries included). A call made inside another
  (``mlp``'s ``linear``) counts toward the outer one.

A product's ``floor`` is the bytes its data needs at the least, in the device's words: every
weight row once (ternary: both planes), every activation row once (``bits`` planes) and every
result once (integers of ``RESULT_INT_BYTES``, or one bit per threshold level).
``CallStats.overhead`` is the call's bytes over its floor.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from .device_config import RESULT_INT_BYTES, DeviceConfig

__all__ = ["CallStats", "DeviceStats", "counted", "product_floor"]


@dataclass(frozen=True)
class CallStats:
    """One public call's traffic on the link: ``name``, bytes ``sent`` and ``received``, and
    ``floor`` (a product's least bytes; 0 for other calls)."""

    name: str
    sent: int
    received: int
    floor: int = 0

    @property
    def total(self) -> int:
        return self.sent + self.received

    @property
    def overhead(self) -> float | None:
        """Bytes on the link over the floor (``None`` for calls that are not products)."""
        return self.total / self.floor if self.floor else None


@dataclass
class DeviceStats:
    """Totals since the last ``reset_stats``. LAYER commands: ``commands``, ``cycles``,
    ``active`` (cycles the array computed), ``ideal`` (the array's cycles at peak for the same
    GEMMs), ``tokens`` (rows through layers), ``restarts`` (``generate``'s prefills again after
    a lost cache or answer), ``per_command`` ``(T, cycles, active)``. The link: ``calls``, one
    ``CallStats`` per public call, and their totals ``link_sent``, ``link_received``."""

    commands: int = 0
    cycles: int = 0
    active: int = 0
    ideal: float = 0.0
    tokens: int = 0
    restarts: int = 0
    per_command: list[tuple[int, int, int]] = field(default_factory=list)
    calls: list[CallStats] = field(default_factory=list)

    @property
    def utilization(self) -> float:
        return self.ideal / self.cycles if self.cycles else 0.0

    @property
    def link_sent(self) -> int:
        return sum(c.sent for c in self.calls)

    @property
    def link_received(self) -> int:
        return sum(c.received for c in self.calls)

    @property
    def last_call(self) -> CallStats | None:
        return self.calls[-1] if self.calls else None


def product_floor(dev: DeviceConfig, t: int, n: int, k: int, *, bits: int = 1,
                  weight_planes: int = 1, levels: int = 0) -> int:
    """The least link bytes of a product of ``t`` rows of ``bits``-bit activations and ``n``
    weight rows of ``weight_planes`` planes, ``k`` long, with ``levels`` threshold levels per
    output (0: integers)."""
    row = -(-k // dev.core.lanes) * dev.word_bytes
    results = -(-t * n * levels // 8) if levels else t * n * RESULT_INT_BYTES
    return n * weight_planes * row + t * bits * row + results


def counted(method):
    """Record a public call's link bytes in ``self.stats.calls`` (the outermost call only);
    ``self._call_floor`` collects the floors that the call's products add."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        link = self._client.stats
        depth = getattr(self, "_call_depth", 0)
        if depth == 0:
            self._call_floor = 0
        sent, received = link.sent, link.received
        self._call_depth = depth + 1
        try:
            return method(self, *args, **kwargs)
        finally:
            self._call_depth = depth
            if depth == 0:
                self.stats.calls.append(CallStats(method.__name__, link.sent - sent,
                                                  link.received - received, self._call_floor))

    return wrapper
