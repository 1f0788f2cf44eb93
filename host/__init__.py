"""The host side of onebit: bit packing, model parameters, the golden model (NumPy only).

``from onebit.host import LayerParams, golden``; ``golden.layer(x, p)`` maps int16 (T, D) to
int16 (T, D) exactly as ``shared/spec/numerics.md`` says.
"""

from . import golden
from .packing import pack_bits, unpack_bits, words_for
from .params import LayerParams, ModelFileError, ModelParams
from .random_model import random_activations, random_layer, random_model

__all__ = [
    "golden", "pack_bits", "unpack_bits", "words_for", "LayerParams", "ModelParams",
    "ModelFileError", "random_layer", "random_model", "random_activations",
]
