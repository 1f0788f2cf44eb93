"""Bit packing follows the spec: element k is bit k % 32 of word k // 32."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from onebit.host import pack_bits, unpack_bits, words_for


def test_bit_positions_match_spec():
    for k in (1, 5, 31, 32, 33, 64, 100):
        for e in range(k):
            bits = np.zeros(k, np.uint8)
            bits[e] = 1
            words = pack_bits(bits)
            assert words.dtype == np.uint32 and words.shape == (words_for(k),)
            expect = np.zeros(words_for(k), np.uint64)
            expect[e // 32] = 1 << (e % 32)
            assert (words == expect).all(), (k, e)


def test_known_word():
    bits = np.array([1, 0, 1, 1] + [0] * 28 + [1], np.uint8)
    assert pack_bits(bits).tolist() == [0b1101, 1]


@given(hnp.arrays(np.uint8, hnp.array_shapes(min_dims=1, max_dims=3, max_side=70),
                  elements=st.integers(0, 1)))
def test_round_trip_any_shape(bits):
    words = pack_bits(bits)
    assert words.shape == bits.shape[:-1] + (words_for(bits.shape[-1]),)
    assert (unpack_bits(words, bits.shape[-1]) == bits).all()


def test_padding_is_zero_and_checked():
    words = pack_bits(np.ones(33, np.uint8))
    assert words.tolist() == [0xFFFF_FFFF, 1]
    with pytest.raises(ValueError, match="Padding bits above bit 33"):
        unpack_bits(np.array([0, 2], np.uint32), 33)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"must hold only 0 and 1, but bits\[1\] = 2"):
        pack_bits(np.array([0, 2]))
    with pytest.raises(TypeError, match="not dtype float64"):
        pack_bits(np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="need 2 words on the last axis, not 1"):
        unpack_bits(np.zeros(1, np.uint32), 40)
    with pytest.raises(ValueError, match="non-negative integer, not -1"):
        words_for(-1)
