"""Property tests of the host's input checks: any input is either accepted exactly when it is
valid, or refused with an error that names the argument; and the device configuration checks."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from onebit.host.accelerator import check_linear_inputs
from onebit.host.core_config import CoreConfig
from onebit.host.device_config import DeviceConfig
from onebit.host.protocol import ARGUMENTS, FrameError, Opcode, encode_args

dtypes = st.sampled_from([np.uint8, np.int8, np.int32, np.int64, np.bool_, np.float32])
arrays = st.builds(lambda a, dtype: a.astype(dtype),
                   hnp.arrays(np.int64, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0,
                                                         max_side=4),
                              elements=st.integers(-2, 2)),
                   dtypes)


def _valid_bits(a):
    return (a.dtype == np.bool_ or np.issubdtype(a.dtype, np.integer)) and \
        bool(np.isin(a, (0, 1)).all())


@given(arrays, arrays)
def test_linear_inputs_accepted_exactly_when_valid(x, w):
    valid = (_valid_bits(x) and _valid_bits(w) and x.ndim == 2 and w.ndim == 2 and
             0 not in x.shape and 0 not in w.shape and x.shape[1] == w.shape[1])
    try:
        gx, gw, thr = check_linear_inputs(x, w)
    except (TypeError, ValueError) as e:
        assert not valid, e
        assert "x_bits" in str(e) or "w_bits" in str(e)
    else:
        assert valid and thr is None
        np.testing.assert_array_equal(gx, x.astype(np.uint8))
        assert gx.dtype == gw.dtype == np.uint8


@given(st.integers(1, 6), st.integers(1, 40),
       hnp.arrays(st.sampled_from([np.int16, np.int64, np.float64]), st.integers(0, 8),
                  elements={"min_value": -60, "max_value": 60}))
def test_thresholds_accepted_exactly_when_valid(n, k, thr):
    """Integer thresholds of the right shape are accepted, any value: beyond [-K, K + 1] they
    are clamped to it (always 1 or always 0, exactly as at the nearer end)."""
    valid = thr.shape == (n,) and np.issubdtype(thr.dtype, np.integer)
    try:
        *_, got = check_linear_inputs(np.zeros((2, k), int), np.zeros((n, k), int), thr)
    except (TypeError, ValueError) as e:
        assert not valid, e
        assert "thresholds" in str(e)
    else:
        assert valid
        np.testing.assert_array_equal(got, np.clip(thr, -k, k + 1))
        dots = np.arange(-k, k + 1)
        assert ((dots[:, None] >= got) == (dots[:, None] >= thr.astype(np.int64))).all()


@given(st.sampled_from(sorted(ARGUMENTS)), st.data())
def test_encode_args_packs_or_names_the_field(opcode, data):
    fields = {name: data.draw(st.integers(-1, 1 << (8 * size)), label=name)
              for name, size in ARGUMENTS[opcode]}
    sizes = dict(ARGUMENTS[opcode])
    bad = [n for n, v in fields.items() if not 0 <= v < 1 << (8 * sizes[n])]
    try:
        out = encode_args(opcode, **fields)
    except FrameError as e:
        assert bad and f"field {bad[0]}" in str(e)
    else:
        assert not bad and len(out) == sum(sizes.values())
        assert out[0] == fields["tag"]


def test_encode_args_names_missing_fields():
    with pytest.raises(FrameError, match="RUN takes fields"):
        encode_args(Opcode.RUN, tag=0)


@pytest.mark.parametrize("kwargs,message", [
    (dict(core=CoreConfig(lanes=4)), "lanes must be a multiple of 8, not 4"),
    (dict(core=CoreConfig(max_k=40000)), "must be at most 32766, not 40000 .max_k 40000"),
    (dict(core=CoreConfig(max_k=20000, max_bits=3)),
     "must be at most 32766, not 46592 .max_k 20000, max_bits 3"),
    (dict(frame_bytes=6), "Frame data size must be a multiple of 4 bytes"),
    (dict(frame_bytes=0), "Frame data size must be an integer of at least 4, not 0"),
    (dict(act_words=3), "Activation store size must be an integer of at least 64"),
    (dict(weight_words=True), "Weight store size must be an integer"),
    (dict(result_beats=0), "Result store size must be a positive integer, not 0"),
    (dict(weight_store="dram"), "Weight store must be one of bram, ice40_spram, not 'dram'"),
    (dict(weight_store="ice40_spram", weight_words=40000),
     r"An SPRAM weight store of 40000 words of 32 bits \(plus the core's 0\) needs 6 "
     "SB_SPRAM256KA blocks; the iCE40 UP5K has 4"),
    (dict(core="big"), "core must be a CoreConfig, not 'big'"),
])
def test_device_config_is_checked(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        DeviceConfig(**kwargs)
