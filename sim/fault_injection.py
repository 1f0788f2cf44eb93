"""Fault injection on the simulated host link, and a campaign that counts what happened.

``FaultyTransport`` wraps ``AmaranthLinkTransport``. Each frame the host writes is, with
probability ``rate``, damaged by one fault of ``FAULT_KINDS``: a single bit flip, a burst of
flipped bits, a dropped byte, a frame cut short, garbage bytes before it, the device reset half
way through it, or a bit flipped in the device's answer. A fault is *detected* when the attempt
it hit fails and the host sends the command again, *harmless* when the attempt still succeeded
(only garbage between frames may be). ``run_campaign`` drives real ``Accelerator.linear`` calls
through it and compares every result with the golden model; ``run_layer_campaign`` does the
same with ``generate`` and ``decode`` of a language model on a device with a layer engine,
where a reset empties the KV caches: a call either returns golden's answer or raises (a
*refused* call), never a wrong one.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ..host import golden
from ..host.accelerator import Accelerator
from ..host.core_config import Op
from ..host.core_streams import expected_gemm
from ..host.device_config import DeviceConfig
from ..host.layer_driver import CacheLostError
from ..host.link import LinkError
from ..host.params import ModelParams
from .link_transport import AmaranthLinkTransport

__all__ = ["FAULT_KINDS", "FaultyTransport", "CampaignReport", "run_campaign",
           "run_layer_campaign"]

FAULT_KINDS = ("bit_flip", "burst_flip", "dropped_byte", "truncated", "garbage",
               "reset_mid_frame", "answer_flip")


class FaultyTransport:
    def __init__(self, inner: AmaranthLinkTransport, *, rate: float, seed: int):
        self.inner = inner
        self.rate = rate
        self.rng = random.Random(seed)
        self.injected: Counter[str] = Counter()
        self.detected: Counter[str] = Counter()
        self.harmless: Counter[str] = Counter()
        self._last_frame: bytes | None = None
        self._pending: str | None = None       # fault of the attempt in progress
        self._flip_answer = False

    def _settle(self, frame: bytes | None) -> None:
        """A new write: the previous attempt failed if this resends the same frame."""
        if self._pending is not None:
            (self.detected if frame == self._last_frame else self.harmless)[self._pending] += 1
        self._pending = None
        self._last_frame = frame

    def finish(self) -> None:
        self._settle(None)

    def write(self, data: bytes) -> None:
        self._settle(data)
        if self.rng.random() >= self.rate:
            self.inner.write(data)
            return
        kind = self.rng.choice(FAULT_KINDS)
        self.injected[kind] += 1
        self._pending = kind
        f = bytearray(data)
        rng = self.rng
        if kind == "bit_flip":
            f[rng.randrange(1, len(f))] ^= 1 << rng.randrange(8)
        elif kind == "burst_flip":
            start = rng.randrange(8, 8 * len(f) - 8)
            for bit in range(start, start + rng.randrange(2, 9)):
                f[bit // 8] ^= 1 << (bit % 8)
        elif kind == "dropped_byte":
            del f[rng.randrange(1, len(f))]
        elif kind == "truncated":
            f = f[:rng.randrange(2, len(f))]
        elif kind == "garbage":
            f = bytearray(rng.randrange(256) for _ in range(rng.randrange(1, 12))) + f
        elif kind == "reset_mid_frame":
            cut = rng.randrange(1, len(f))
            self.inner.write(bytes(f[:cut]))
            self.inner.deliver()                  # let the first part in, then reset
            self.inner.reset_device()
            f = f[cut:]
        elif kind == "answer_flip":
            self._flip_answer = True
        self.inner.write(bytes(f))

    def read(self) -> bytes:
        data = self.inner.read()
        if data and self._flip_answer:
            self._flip_answer = False
            d = bytearray(data)
            d[self.rng.randrange(len(d))] ^= 1 << self.rng.randrange(8)
            data = bytes(d)
        return data

    def drain(self) -> None:
        self.inner.drain()

    def close(self) -> None:
        self.inner.close()


@dataclass
class CampaignReport:
    commands: int = 0
    products: int = 0
    wrong_results: int = 0
    refused: int = 0          # calls that raised a clear error (no result, so none wrong)
    restarts: int = 0         # generate's prefills again after a lost cache or answer
    retries: int = 0
    injected: dict[str, int] = field(default_factory=dict)
    detected: dict[str, int] = field(default_factory=dict)
    harmless: dict[str, int] = field(default_factory=dict)
    device_counters: dict[str, int] = field(default_factory=dict)

    def table(self) -> str:
        lines = [f"{'fault':<16}{'injected':>9}{'detected':>9}{'harmless':>9}"]
        for kind in FAULT_KINDS:
            lines.append(f"{kind:<16}{self.injected.get(kind, 0):>9}"
                         f"{self.detected.get(kind, 0):>9}{self.harmless.get(kind, 0):>9}")
        lines.append(f"{self.products} calls, {self.commands} commands, {self.retries} "
                     f"retries, {self.restarts} restarts, {self.refused} refused, "
                     f"{self.wrong_results} wrong results")
        return "\n".join(lines)


def run_campaign(dev: DeviceConfig, *, products: int = 12, rate: float = 0.3, seed: int = 1,
                 timeout: float = 1.0) -> CampaignReport:
    """Run ``products`` random ``linear`` calls (with and without thresholds) through a faulty
    link; every result is compared with the golden model."""
    faulty = FaultyTransport(AmaranthLinkTransport(dev, timeout_cycles=128), rate=rate,
                             seed=seed)
    rng = np.random.default_rng(seed)
    report = CampaignReport()
    c = dev.core
    with Accelerator(faulty, timeout=timeout, retries=8) as acc:
        for i in range(products):
            t = int(rng.integers(1, 2 * c.max_t))
            n = int(rng.integers(1, 2 * c.cols + 3))
            k = int(rng.integers(1, c.max_k + 1))
            x, w = rng.integers(0, 2, (t, k)), rng.integers(0, 2, (n, k))
            thr = rng.integers(-k, k + 2, n) if i % 2 else None
            ints, bits = expected_gemm(Op.XOR, x, w, thr)
            got = acc.linear(x, w, thr)
            report.wrong_results += int(not np.array_equal(got, ints if thr is None else bits))
            report.products += 1
        faulty.rate = 0.0
        report.device_counters = acc.counters()
        faulty.finish()
        report.commands = acc.link.stats.commands
        report.retries = acc.link.stats.retries
    report.injected = dict(faulty.injected)
    report.detected = dict(faulty.detected)
    report.harmless = dict(faulty.harmless)
    return report


def run_layer_campaign(dev: DeviceConfig, model: ModelParams, *, calls: int = 6,
                       tokens: int = 3, rate: float = 0.3, seed: int = 1,
                       timeout: float = 5.0) -> CampaignReport:
    """Load ``model`` (without faults), then make ``calls`` calls through a faulty link,
    alternately ``generate(prompt, tokens)`` and a prefill of a prompt followed by ``tokens``
    single-token ``decode`` steps; each result is compared with the golden model. A call that
    raises ``LinkError`` (a lost cache, a lost LAYER answer) counts as refused; the next call
    starts with a prefill."""
    faulty = FaultyTransport(AmaranthLinkTransport(dev, timeout_cycles=128), rate=0.0,
                             seed=seed)
    rng = np.random.default_rng(seed)
    report = CampaignReport()
    v, d = model.vocab, model.d_model
    with Accelerator(faulty, timeout=timeout, retries=8) as acc:
        acc.load_model(model)
        faulty.rate = rate
        for i in range(calls):
            prompt = rng.integers(0, v, size=int(rng.integers(1, 4)))
            try:
                if i % 2 == 0:
                    got = acc.generate(prompt, tokens)
                    want = golden.generate(prompt, tokens, model)
                else:
                    x = model.E[prompt].astype(np.int16)
                    rows = rng.integers(-256, 257, size=(tokens, d)).astype(np.int16)
                    p = model.layers[0]
                    got = np.concatenate([acc.layer(x, 0)] + [acc.decode(r, 0)[None]
                                                              for r in rows])
                    want = golden.layer(np.concatenate([x, rows]), p)
                report.wrong_results += int(not np.array_equal(got, want))
            except (CacheLostError, LinkError):
                report.refused += 1
            report.products += 1
        faulty.rate = 0.0
        faulty.finish()
        report.commands = acc.link.stats.commands
        report.retries = acc.link.stats.retries
        report.restarts = acc.stats.restarts
    report.injected = dict(faulty.injected)
    report.detected = dict(faulty.detected)
    report.harmless = dict(faulty.harmless)
    return report
