"""A byte transport into ``DeviceLink`` on Verilator or Icarus Verilog through cocotb.

The device's Verilog is built once per design (cached under ``build/sim``); the simulator then
runs ``onebit.sim.cocotb_link_server`` in a background thread of this process, which connects
back to a local socket. ``write`` and ``read`` move bytes over that socket, so the host driver
talks to the compiled gateware exactly as to a board's serial port. ``close`` ends the
simulation and raises if the testbench's stream monitor saw a handshake rule broken.

With ``platform`` (a board's Amaranth platform) the device is elaborated as it is for that
board's bitstream, its family's primitives (iCE40 SB_MAC16 and SB_SPRAM256KA, ECP5 CCU2C and
TRELLIS_FF) simulated by Yosys's cell models.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

from ..hdl.lib.family import family
from ..hdl.link.device import DeviceLink
from ..host.device_config import DeviceConfig
from ..host.link import LinkError
from .cocotb_runner import CELL_FAMILIES, build_design, cell_models, failure_lines
from .verilog import write_verilog

__all__ = ["CocotbLinkTransport"]


class CocotbLinkTransport:
    def __init__(self, dev: DeviceConfig, *, simulator: str, timeout_cycles: int = 256,
                 seed: int = 0, idle: float = 0.2, stall: float = 0.2, poll_cycles: int = 8,
                 poll: float = 0.01, quiet: float = 0.3, connect_timeout: float = 300.0,
                 platform=None):
        verilog = write_verilog(DeviceLink(dev, timeout=timeout_cycles), "device",
                                platform=platform)
        fam = family(platform)
        if "ice40_spram" in (dev.weight_store, dev.core.weight_memory):
            fam = fam or "ice40"
        models = [cell_models(fam)] if fam in CELL_FAMILIES else []
        runner, build_dir = build_design(simulator, verilog, "device", models)
        self._quiet, self._simulator = quiet, simulator
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(connect_timeout)
        params = {"port": listener.getsockname()[1], "seed": seed, "idle": idle,
                  "stall": stall, "poll_cycles": poll_cycles}
        test_dir = build_dir / f"serve-{os.getpid()}-{id(self)}"
        test_dir.mkdir(parents=True, exist_ok=True)
        self._log = test_dir / "sim.log"
        self._xml = test_dir / "results.xml"
        self._error: BaseException | None = None

        def run():
            try:
                runner.test(test_module="onebit.sim.cocotb_link_server", hdl_toplevel="device",
                            build_dir=build_dir, test_dir=test_dir,
                            extra_env={"ONEBIT_LINK_SERVER": json.dumps(params)},
                            results_xml=str(self._xml), log_file=self._log)
            except BaseException as e:      # reported by close()
                self._error = e

        self._thread = threading.Thread(target=run, name=f"{simulator}-device", daemon=True)
        self._thread.start()
        try:
            self._sock, _ = listener.accept()
        except OSError as e:
            raise LinkError(f"{simulator} did not start the device (log: {self._log})") from e
        finally:
            listener.close()
        self._sock.settimeout(poll)

    @property
    def log(self) -> Path:
        return self._log

    def write(self, data: bytes) -> None:
        self._sock.sendall(data)

    def read(self) -> bytes:
        try:
            data = self._sock.recv(1 << 16)
        except TimeoutError:
            return b""
        if not data:
            raise LinkError(f"the {self._simulator} simulation ended (log: {self._log}):\n"
                            + failure_lines(self._log))
        return data

    def drain(self) -> None:
        deadline = time.monotonic() + self._quiet
        while time.monotonic() < deadline:
            if self.read():
                deadline = time.monotonic() + self._quiet

    def close(self) -> None:
        if self._sock.fileno() < 0:
            return
        self._sock.close()
        self._thread.join(timeout=60)
        from cocotb_tools.check_results import get_results

        if self._error is not None:
            raise LinkError(f"the {self._simulator} run failed: {self._error}")
        total, failed = get_results(self._xml)
        if failed or total != 1:
            raise LinkError(f"the {self._simulator} testbench failed (log: {self._log}):\n"
                            + failure_lines(self._log))
