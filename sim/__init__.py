"""Simulation of onebit gateware: Amaranth simulator helpers and cocotb runners."""
