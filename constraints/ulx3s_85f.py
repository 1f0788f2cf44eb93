"""ULX3S with an ECP5 LFE5U-85F (CABGA381): amaranth-boards' ``ULX3S_85F_Platform``;
the clock is 60 MHz (25 MHz x 12 / 5). With nextpnr's default router the design does not route
in reasonable time (router1 leaves thousands of arcs queued after 40 minutes), so the board
builds with router2. Of the placement seeds tried (1, 4, 3, 7; built against 65 MHz), three
meet 60 MHz (68.3, 67.3, 60.9 MHz; seed 7 reaches 59.2, ``docs/build.md``); the board tries 1
(the fastest), then 4 and 3; ``--seed``, ``--seeds`` and ``--router`` override these.

The device has the layer engine for models of the shipped one's shape (D = 128, H = 4,
F <= 512, two layers, a 128-token KV cache each) and its precision (activations of up to 3
bits, binary weights: ``LayerConfig.max_bits``), and a 16-bank weight store for decode, so
``onebit demo``'s model runs on this board whole; its GEMM core takes activations of up to 4
bits as bit-planes (``CoreConfig.max_bits``: ``linear`` of A-bit levels in one product)."""

from amaranth_boards.ulx3s import ULX3S_85F_Platform

from ..host.core_config import CoreConfig
from ..host.device_config import DeviceConfig, LayerConfig
from ._ulx3s import ulx3s_board

DEVICE = DeviceConfig(
    core=CoreConfig(rows=4, cols=4, lanes=32, max_k=1536, max_t=32, max_n=512, max_bits=4),
    frame_bytes=1024, act_words=4096, weight_words=16384, thresh_words=2048, result_beats=512,
    weight_banks=16,
    layer=LayerConfig(d_model=128, heads=4, max_ff=512, kv_capacity=128, kv_slots=2,
                      res_words=1024, param_words=6144, max_bits=3))

BOARD = ulx3s_board("85F", ULX3S_85F_Platform, {
    "LUT4": 83640, "FF": 83640, "BRAM": 208,
    "SPRAM": 0, "DSP": 156, "CARRY": 41820}, target_hz=60e6, device=DEVICE,
    seeds=(1, 4, 3), router="router2")
