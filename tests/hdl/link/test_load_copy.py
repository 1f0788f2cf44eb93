"""LoadCopy: staged bytes become whole little-endian store words at the right addresses, in the
right store only, thresholds and parameters saturated; ``done`` after the last write."""

import random

import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from onebit.hdl.link.datapath import store_word_bits
from onebit.hdl.link.load_copy import LoadCopy
from onebit.host.core_config import CoreConfig
from onebit.host.device_config import PARAM_BITS, DeviceConfig, LayerConfig
from onebit.host.loads import loads

DEV = DeviceConfig(
    core=CoreConfig(rows=2, cols=2, lanes=8, max_k=32, max_t=8, max_n=64),
    frame_bytes=32, act_words=256, weight_words=1024, thresh_words=256, result_beats=64,
    weight_banks=4,
    layer=LayerConfig(d_model=16, heads=2, max_ff=32, kv_capacity=12, kv_slots=2,
                      res_words=80, param_words=128))


def _saturate(value: int, bits: int) -> int:
    top = (1 << (bits - 1)) - 1
    return max(-top - 1, min(top, value)) & ((1 << bits) - 1)


def expected_words(store: str, unit: int, data: bytes) -> list[int]:
    """The store words a LOAD of ``data`` writes (``docs/host-link.md``)."""
    c = DEV.core
    words = []
    for at in range(0, len(data), unit):
        raw = data[at:at + unit]
        if store == "thresh":
            words.append(_saturate(int.from_bytes(raw, "little", signed=True),
                                   c.threshold_width))
        elif store == "param":
            word = 0
            for i in range(c.cols):
                v = int.from_bytes(raw[4 * i:4 * i + 4], "little", signed=True)
                word |= _saturate(v, PARAM_BITS) << (PARAM_BITS * i)
            words.append(word)
        else:
            words.append(int.from_bytes(raw, "little"))
    return words


@pytest.mark.parametrize("family", ["none", "ice40"])
@pytest.mark.parametrize("seed", range(2))
def test_copies_match_the_protocol(family, seed):
    rng = random.Random(seed)
    dut = LoadCopy(DEV, addr_bits=10, word_bits=store_word_bits(DEV))
    device_loads = loads(DEV)
    widths = {"thresh": DEV.core.threshold_width, "param": PARAM_BITS * DEV.core.cols}
    platform = None
    if family == "ice40":
        class Platform:
            pass
        platform = Platform()
        platform.family = "ice40"

    async def bench(ctx):
        for _ in range(12):
            i = rng.randrange(len(device_loads))
            _, store, unit, depth = device_loads[i]
            n = rng.randrange(DEV.frame_bytes // unit + 1)
            choices = [0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)]
            data = bytes(rng.choice(choices) for _ in range(n * unit))
            for at, b in enumerate(data):
                ctx.set(dut.stage, {"addr": at, "data": b, "en": 1})
                await ctx.tick()
            ctx.set(dut.stage.en, 0)
            offset = rng.randrange(depth - n + 1)
            ctx.set(dut.sel, 1 << i)
            ctx.set(dut.unit_mask, unit - 1)
            ctx.set(dut.offset, offset)
            ctx.set(dut.length, len(data))
            ctx.set(dut.length_nz, len(data) != 0)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            writes, cycles = [], 0
            while True:
                done, wen, waddr, wdata = (ctx.get(dut.done), ctx.get(dut.wen),
                                           ctx.get(dut.waddr), ctx.get(dut.wdata))
                if wen:
                    assert wen == 1 << i
                    writes.append((waddr, wdata & ((1 << widths.get(store, 8 * unit)) - 1)))
                if done:
                    break
                await ctx.tick()
                cycles += 1
                assert cycles < 8 * DEV.frame_bytes
            await ctx.tick()
            assert not ctx.get(dut.wen)             # (the last write is in ``done``'s cycle)
            words = expected_words(store, unit, data)
            assert writes == [(offset + j, w) for j, w in enumerate(words)], store

    # (LoadCopy elaborates for a family, ``family(platform)``: iCE40 writes a stage earlier.)
    sim = Simulator(Fragment.get(dut, platform))
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
