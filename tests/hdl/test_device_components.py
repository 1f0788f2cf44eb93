# amaranth: UnusedElaboratable=no
"""Every gateware component built from a DeviceConfig checks it when it is built: another type
is a TypeError naming ``dev``, and a block that needs the layer engine refuses a device
without one, naming itself."""

import pytest

from onebit.hdl.core.gemm_runner import GemmRunner
from onebit.hdl.core.gemv import Gemv
from onebit.hdl.layer.attention_steps import AttentionSteps
from onebit.hdl.layer.engine import LayerEngine
from onebit.hdl.layer.residual_pass import ResidualPass
from onebit.hdl.link.arguments import ArgumentDecoder
from onebit.hdl.link.command import CommandProcessor
from onebit.hdl.link.datapath import Datapath
from onebit.hdl.link.device import DeviceLink
from onebit.hdl.link.load_copy import LoadCopy
from onebit.hdl.link.reply import ReplySender
from onebit.hdl.link.run_sizer import RunSizer
from onebit.host.device_config import DeviceConfig, LayerConfig

BUILD = {
    "GemmRunner": GemmRunner, "Gemv": Gemv, "LayerEngine": LayerEngine,
    "AttentionSteps": AttentionSteps, "ResidualPass": ResidualPass,
    "ArgumentDecoder": ArgumentDecoder, "CommandProcessor": CommandProcessor,
    "Datapath": Datapath, "DeviceLink": DeviceLink, "ReplySender": ReplySender,
    "RunSizer": RunSizer,
    "LoadCopy": lambda dev: LoadCopy(dev, addr_bits=3, word_bits=8),
}
NEEDS_LAYER = ("LayerEngine", "AttentionSteps", "ResidualPass")
GOOD = DeviceConfig(layer=LayerConfig(), weight_banks=4)


@pytest.mark.parametrize("name", sorted(BUILD))
def test_a_device_config_is_required(name):
    with pytest.raises(TypeError, match=r"dev must be a DeviceConfig, not 'core'"):
        BUILD[name]("core")
    BUILD[name](GOOD)                                       # (and a good one builds)


@pytest.mark.parametrize("name", NEEDS_LAYER)
def test_layer_blocks_need_a_layer_engine(name):
    with pytest.raises(ValueError, match=rf"^{name} needs a DeviceConfig with a layer"):
        BUILD[name](DeviceConfig())


def test_load_copy_takes_a_store_of_one_word():
    """A store of one word has an address of 0 bits (the fuzz test's smallest device)."""
    LoadCopy(GOOD, addr_bits=0, word_bits=8)
    with pytest.raises(ValueError, match="Store address width must be an integer of at least 0"):
        LoadCopy(GOOD, addr_bits=-1, word_bits=8)
