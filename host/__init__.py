"""The host side of onebit: bit packing, model parameters, the golden model (NumPy only).

``from onebit.host import LayerParams, golden``; ``golden.layer(x, p)`` maps int16 (T, D) to
int16 (T, D) exactly as ``docs/numerics.md`` says. ``Accelerator.open("sim")`` drives the
gateware (simulated, or a board over ``"serial://..."``).
"""

from . import golden
from .accelerator import Accelerator
from .device_config import DeviceConfig
from .link import DeviceError, LinkError, LinkTimeout
from .mlp import InputQuantizer, MLPLayer, MLPParams
from .packing import pack_bits, unpack_bits, words_for
from .params import LayerParams, ModelFileError, ModelParams
from .random_model import random_activations, random_layer, random_model

__all__ = [
    "golden", "Accelerator", "DeviceConfig", "DeviceError", "LinkError", "LinkTimeout",
    "pack_bits", "unpack_bits", "words_for", "LayerParams", "ModelParams",
    "ModelFileError", "random_layer", "random_model", "random_activations", "InputQuantizer",
    "MLPLayer", "MLPParams",
]
