"""Fault injection on the simulated link: every fault is detected (its attempt fails and the
command is sent again) or harmless; no result is ever wrong; the link recovers each time."""

import pytest

from onebit.host.core_config import CoreConfig
from onebit.host.device_config import DeviceConfig
from onebit.sim.fault_injection import FAULT_KINDS, run_campaign

DEV = DeviceConfig(core=CoreConfig(rows=2, cols=3, lanes=8, max_k=24, max_t=4, max_n=12),
                   frame_bytes=8, act_words=16, weight_words=24, thresh_words=8,
                   result_beats=16)


@pytest.mark.slow
def test_fault_campaign():
    report = run_campaign(DEV, products=16, rate=0.35, seed=3)
    print("\n" + report.table())
    assert report.wrong_results == 0
    assert report.products == 16
    injected = sum(report.injected.values())
    assert injected >= 40 and set(report.injected) == set(FAULT_KINDS)
    for kind in FAULT_KINDS:
        n = report.injected[kind]
        assert report.detected.get(kind, 0) + report.harmless.get(kind, 0) == n, kind
        if kind != "garbage":        # a damaged frame can never succeed
            assert report.detected.get(kind, 0) == n, kind
    assert report.retries >= injected - report.injected["garbage"]


@pytest.mark.parametrize("calls, tokens, seed", [
    pytest.param(4, 2, 4, marks=pytest.mark.slow), pytest.param(8, 3, 11, marks=pytest.mark.slow)])
def test_layer_fault_campaign(calls, tokens, seed):
    """generate and decode through a faulty link (resets empty the KV caches): every call
    returns golden's answer or raises; none is wrong."""
    import numpy as np

    from onebit.host.layer_driver import device_for
    from onebit.host.random_model import random_model
    from onebit.sim.fault_injection import run_layer_campaign

    m = random_model(np.random.default_rng(2), vocab=7, d_model=32, heads=2, d_ff=16,
                     n_layers=2)
    dev = device_for(m, rows=2, cols=2, lanes=16, max_t=4, kv_capacity=12, frame_bytes=64)
    report = run_layer_campaign(dev, m, calls=calls, tokens=tokens, rate=0.3, seed=seed)
    print("\n" + report.table())
    assert report.wrong_results == 0 and report.products == calls
    assert report.injected.get("reset_mid_frame", 0) >= 1
    assert report.refused < report.products
