"""``DeviceConfig.reshaped``: another array shape for a board's device, its stores holding what
they held (``onebit build --rows/--cols/--lanes`` builds this device)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onebit.flow.boards import board, boards
from onebit.host.device_config import DeviceConfig
from onebit.host.layer_layout import param_words_per_layer

shapes = st.tuples(st.sampled_from([1, 2, 3, 4, 8]), st.sampled_from([1, 2, 4, 8, 16]),
                   st.sampled_from([8, 16, 32, 64]))


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(boards())), shapes)
def test_reshaped_keeps_what_the_stores_hold(name, shape):
    dev = board(name).device
    rows, cols, lanes = shape
    try:
        new = dev.reshaped(rows=rows, cols=cols, lanes=lanes)
    except ValueError as e:                     # a shape the layer cannot take, named
        assert str(e)
        return
    c, n = dev.core, new.core
    assert (n.rows, n.cols, n.lanes) == shape
    assert isinstance(DeviceConfig(**{f: getattr(new, f) for f in new.__dataclass_fields__}),
                      DeviceConfig)
    assert (new.act_words, new.weight_words) == (dev.act_words, dev.weight_words)
    if dev.weight_banks == 1:
        assert new.weight_banks == 1
    else:
        assert new.weight_banks & (new.weight_banks - 1) == 0
        assert new.weight_banks <= dev.weight_banks * n.rows * n.cols // (c.rows * c.cols)
    ly, nl = dev.layer, new.layer
    if ly is None:
        assert nl is None
        return
    assert new.gemv_problem(nl.d_model) is None or new.weight_banks == 1
    assert nl.param_words * n.cols >= ly.param_words * c.cols
    assert nl.param_words >= param_words_per_layer(new)
    assert nl.res_words * n.cols >= ly.res_words * c.cols
    # No more words than that: a wider word holds more values.
    assert (nl.param_words - 1) * n.cols < max(ly.param_words * c.cols,
                                               param_words_per_layer(new) * n.cols)


def test_the_85f_at_2048_lanes():
    """8 x 8 x 32 on the 85F: half the parameter and residual words (each twice as wide), and
    the 32 banks the model width (128 bits, 4 words a row) lets the GEMV unit read."""
    dev = board("ulx3s-85f").device
    new = dev.reshaped(rows=8, cols=8, lanes=32)
    assert (new.weight_banks, new.layer.param_words, new.layer.res_words) == (32, 3072, 512)
    assert dev.reshaped() == dev


def test_reshaped_names_a_shape_the_layer_cannot_take():
    dev = board("ulx3s-85f").device
    with pytest.raises(ValueError, match="Model width 128 must be a multiple of the lanes"):
        dev.reshaped(lanes=256)
    with pytest.raises(ValueError, match="Row count must be a positive integer, not 0"):
        dev.reshaped(rows=0)
