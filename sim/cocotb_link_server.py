"""cocotb test module: DeviceLink in Verilator or Icarus, its byte streams bridged to a socket.

``onebit.sim.cocotb_link.CocotbLinkTransport`` starts the simulator with this module; the test
connects back to the host process's socket and moves bytes both ways, with random idle cycles
on the input stream and random backpressure on the output stream, whose handshake rules the
sink checks. It ends when the host closes the socket.
"""

from __future__ import annotations

import json
import os
import random
import socket

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, Timer

from .cocotb_gemm import StreamSink, StreamSource

PERIOD_NS = 10


@cocotb.test()
async def serve(dut):
    params = json.loads(os.environ["ONEBIT_LINK_SERVER"])
    rng = random.Random(params["seed"])
    dut.rst.value = 1
    Clock(dut.clk, PERIOD_NS, unit="ns", impl="gpi").start()    # (in C: no Python a cycle)
    source = StreamSource(dut, "i", dut.clk, rng, params["idle"])
    sink = StreamSink(dut, "o", dut.clk, rng, params["stall"])
    await ClockCycles(dut.clk, 2)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    sock = socket.create_connection(("127.0.0.1", params["port"]), timeout=30)
    sock.setblocking(False)
    # The socket is polled every ``poll_cycles`` cycles while bytes move, and up to 64 times
    # less often while nothing does (a long computation then simulates without Python).
    wait = params["poll_cycles"]
    try:
        while True:
            await Timer(wait * PERIOD_NS, unit="ns")     # (one callback, not one a cycle)
            try:
                data = sock.recv(1 << 16)
            except BlockingIOError:
                data = None
            if data == b"":
                return                       # the host closed the link
            busy = bool(data) or bool(sink.items) or not source.idle_now
            wait = params["poll_cycles"] if busy else min(2 * wait, 64 * params["poll_cycles"])
            if data:
                source.send(data)
            if sink.items:
                out = bytes(sink.items)
                sink.items.clear()
                sock.setblocking(True)
                sock.sendall(out)
                sock.setblocking(False)
    finally:
        sock.close()
