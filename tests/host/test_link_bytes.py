"""Bytes on the link: the client counts every byte it writes and reads, ``acc.stats.calls`` records
each public call's bytes beside its floor (weights, activations and results once), and a product
whose weights fit the device's stores moves at most 1.1 times its floor."""

import numpy as np
import pytest

from onebit.host import Accelerator, DeviceConfig, golden
from onebit.host.core_config import CoreConfig
from onebit.host.mlp import MLPLayer, MLPParams
from onebit.host.stats import product_floor
from onebit.sim.transports import open_sim

# The default device's stores with a core of up to 2-bit activations (1024-byte frames).
DEV = DeviceConfig()
PLANES = DeviceConfig(core=CoreConfig(max_bits=2))


class _Counting:
    """A real transport, with the bytes it carries counted on the way."""

    def __init__(self, inner):
        self.inner, self.sent, self.received = inner, 0, 0

    def write(self, data: bytes) -> None:
        self.sent += len(data)
        self.inner.write(data)

    def read(self) -> bytes:
        data = self.inner.read()
        self.received += len(data)
        return data

    def drain(self) -> None:
        self.inner.drain()

    def close(self) -> None:
        self.inner.close()


@pytest.fixture(scope="module")
def counted():
    transport = _Counting(open_sim(simulator="amaranth", config=DEV))
    with Accelerator(transport, timeout=120) as acc:
        yield acc, transport


@pytest.fixture(scope="module")
def planes():
    with Accelerator.open("sim", simulator="amaranth", config=PLANES, timeout=120) as acc:
        yield acc


def test_the_client_counts_every_byte_and_calls_record_theirs(counted):
    acc, transport = counted
    assert (acc.link.stats.sent, acc.link.stats.received) == (transport.sent,
                                                                transport.received) != (0, 0)
    acc.reset_stats()
    rng = np.random.default_rng(0)
    x, w = rng.integers(0, 2, (3, 40), np.uint8), rng.integers(0, 2, (5, 40), np.uint8)
    before = transport.sent, transport.received
    np.testing.assert_array_equal(acc.linear(x, w), golden.linear(x, w))
    call = acc.stats.last_call
    assert call.name == "linear"
    assert (call.sent, call.received) == (transport.sent - before[0],
                                          transport.received - before[1])
    assert call.floor == product_floor(DEV, 3, 5, 40) == 5 * 8 + 3 * 8 + 3 * 5 * 2
    assert (acc.stats.link_sent, acc.stats.link_received) == (call.sent, call.received)
    # A call made inside another counts toward the outer one.
    m = MLPParams([MLPLayer(w=w, thresholds=np.zeros(5, np.int64)),
                   MLPLayer(w=rng.integers(0, 2, (2, 5), np.uint8))])
    np.testing.assert_array_equal(acc.mlp(x, m), golden.mlp(x, m))
    assert [c.name for c in acc.stats.calls] == ["linear", "mlp"]
    assert acc.stats.last_call.floor == product_floor(DEV, 3, 5, 40, levels=1) + \
        product_floor(DEV, 3, 2, 5)
    acc.reset_stats()
    assert acc.stats.calls == [] and acc.stats.last_call is None


@pytest.mark.parametrize(("t", "n", "k", "levels"), [
    (32, 32, 128, 0), (70, 20, 100, 0), (48, 48, 256, 1), (20, 36, 600, 1),
])
def test_a_product_whose_weights_fit_moves_at_most_1_1_times_its_floor(counted, t, n, k, levels):
    acc, _ = counted
    rng = np.random.default_rng(t + n + k)
    x, w = rng.integers(0, 2, (t, k), np.uint8), rng.integers(0, 2, (n, k), np.uint8)
    thr = rng.integers(-k // 8, k // 8 + 1, n) if levels else None
    assert n * -(-k // DEV.core.lanes) <= DEV.weight_words        # the weights fit
    np.testing.assert_array_equal(acc.linear(x, w, thr), golden.linear(x, w, thr))
    call = acc.stats.last_call
    assert call.floor == product_floor(DEV, t, n, k, levels=levels)
    assert 1.0 <= call.overhead <= 1.1, call


@pytest.mark.parametrize(("bits", "weights", "device"), [
    (2, "binary", "one-bit"), pytest.param(3, "ternary", "one-bit", marks=pytest.mark.slow),
    (2, "ternary", "planes"),
])
def test_planes_and_ternary_weights_send_each_row_once(counted, planes, bits, weights, device):
    # Activation planes stacked as tokens (one-bit core) or summed on the device (planes core),
    # ternary weight planes side by side as outputs: every row crosses the link once.
    acc = counted[0] if device == "one-bit" else planes
    rng = np.random.default_rng(bits)
    t, n, k = 32, 24, 128
    x = rng.integers(0, 1 << bits, (t, k))
    w = rng.integers(-1, 2, (n, k)) if weights == "ternary" else rng.integers(0, 2, (n, k))
    np.testing.assert_array_equal(acc.linear(x, w, bits=bits, weights=weights),
                                  golden.linear(x, w, bits=bits, weights=weights))
    call = acc.stats.last_call
    assert call.floor == product_floor(acc.config, t, n, k, bits=bits,
                                       weight_planes=1 + (weights == "ternary"))
    # The device returns an integer per plane pair it summed: at most bits x 2 per output.
    results = t * n * 2 * (bits if device == "one-bit" else 1) * (1 + (weights == "ternary"))
    assert call.total <= 1.1 * (call.floor - t * n * 2 + results), call
