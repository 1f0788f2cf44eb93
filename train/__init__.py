"""Training and export of 1-bit language models of the spec's shape (PyTorch, ``onebit[train]``).

- :mod:`.corpus`: the character corpus (Python's own documentation text, ``pydoc_data.topics``).
- :mod:`.ste`: straight-through estimators, stochastic binarisation, error feedback.
- :mod:`.binary_lm`: the spec's model with quantisation-aware training (``BinaryLM``).
- :mod:`.float_lm`: its float twin (float weights, softmax attention, LayerNorm).
- :mod:`.export`: folding into the spec's integer thresholds, int8 scales and shift.
- :mod:`.emulate`: the exported model's integer forward in PyTorch (checked against the golden
  model).
- :mod:`.loop`: training runs, technique presets and evaluation; :mod:`.compare` the table.
"""
