"""onebit: an open accelerator for 1-bit language models.

Subpackages: ``onebit.host`` (NumPy only: packing, model format, golden model, driver),
``onebit.hdl`` (Amaranth gateware), ``onebit.sim`` (simulation harness and testbenches).
"""

__version__ = "0.1.0"
