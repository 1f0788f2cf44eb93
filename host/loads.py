"""The LOAD commands: which store each fills and its wire unit, one table for the host driver
(``Accelerator._load`` counts offsets in units) and the command processor (which checks offsets
against the depths and copies the staged bytes into the store)."""

from __future__ import annotations

from typing import NamedTuple

from .device_config import PARAM_BYTES, RESIDUAL_BYTES, THRESHOLD_BYTES, DeviceConfig
from .protocol import Opcode

__all__ = ["Load", "loads", "load_unit"]


class Load(NamedTuple):
    """One LOAD command of a device."""

    opcode: Opcode
    store: str          # the datapath's store: "act", "weight", "thresh", "resid", "param"
    unit: int           # bytes of one store word on the wire
    depth: int          # words in the store


def loads(dev: DeviceConfig) -> list[Load]:
    """Every LOAD ``dev`` knows (the residual and parameter stores only with a layer engine)."""
    table = [Load(Opcode.LOAD_ACTIVATIONS, "act", dev.word_bytes, dev.act_words),
             Load(Opcode.LOAD_WEIGHTS, "weight", dev.word_bytes, dev.weight_words),
             Load(Opcode.LOAD_THRESHOLDS, "thresh", THRESHOLD_BYTES, dev.thresh_words)]
    if dev.layer is not None:
        cols = dev.core.cols
        table += [Load(Opcode.LOAD_RESIDUAL, "resid", RESIDUAL_BYTES * cols,
                       dev.layer.res_words),
                  Load(Opcode.LOAD_PARAMS, "param", PARAM_BYTES * cols, dev.layer.param_words)]
    return table


def load_unit(dev: DeviceConfig, opcode: Opcode) -> int:
    """Bytes per store word of a LOAD command (``ValueError`` if ``dev`` has no such LOAD)."""
    for load in loads(dev):
        if load.opcode == opcode:
            return load.unit
    raise ValueError(f"this device has no {Opcode(opcode).name}")
