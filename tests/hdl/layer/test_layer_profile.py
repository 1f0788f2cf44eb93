"""The layer engine's step profile (``onebit bench layer --plot``): the cycles sampled per step
on Amaranth's simulator add up exactly to the cycles the device reports for the same LAYER
commands, for prefill and decode; every step of the numerics shows up; the plot is a PNG of
the expected size."""

import struct

from onebit.bench.layer_profile import LABELS, plot_profile, profile
from onebit.host.core_config import CoreConfig
from onebit.host.device_config import DeviceConfig, LayerConfig

DEV = DeviceConfig(core=CoreConfig(rows=2, cols=4, lanes=16, max_k=64, max_t=8, max_n=96),
                   frame_bytes=256, act_words=512, weight_words=4096, thresh_words=512,
                   result_beats=64,
                   layer=LayerConfig(d_model=32, heads=2, max_ff=64, kv_capacity=16, kv_slots=1,
                                     res_words=64, param_words=64))


def test_the_profile_adds_up_to_the_device_count(tmp_path):
    r = profile(DEV, t=8, decode=2)
    assert r["bit_exact"]
    for phase in ("prefill", "decode"):
        assert r[phase]["total"] == r[phase]["device_cycles"] > 0
        steps = r[phase]["steps"]
        assert set(steps) == {s.name for s in LABELS}
        for name in ("QUANTISE", "QKV", "ATTENTION", "OUT", "FFN_UP", "FFN_DOWN"):
            assert steps[name] > 0, (phase, name)
    data = plot_profile(r, tmp_path / "p.png", "profile").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1000, 500)
