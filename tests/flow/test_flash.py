"""``onebit flash``: the exact command (``--dry-run``) for each board and target, refusals of
what a board's programmer cannot do, and the real openFPGALoader with no board attached: a
clear error and exit status 1, never a traceback."""

import shutil

import pytest

from onebit.cli.main import main
from onebit.flow.flash import FlashError, loader


@pytest.fixture
def bitstream(tmp_path):
    path = tmp_path / "top.bit"
    path.write_bytes(b"\xff" * 64)
    return path


@pytest.mark.parametrize("board,flags,tail", [
    ("icebreaker", [], ["-b", "ice40_generic", "--write-flash"]),
    ("icebreaker", ["--flash"], ["-b", "ice40_generic", "--write-flash"]),
    ("ulx3s-25f", [], ["-b", "ulx3s", "--write-sram"]),
    ("ulx3s-85f", ["--sram"], ["-b", "ulx3s", "--write-sram"]),
    ("ulx3s-85f", ["--flash"], ["-b", "ulx3s", "--write-flash"]),
])
def test_dry_run_prints_the_exact_command(board, flags, tail, bitstream, capsys):
    assert main(["flash", "--board", board, "--bitstream", str(bitstream), *flags,
                 "--dry-run"]) == 0
    words = capsys.readouterr().out.split()
    assert words[0].endswith("openFPGALoader") and words[1:] == [*tail, str(bitstream)]


@pytest.mark.parametrize("argv,message", [
    (["--board", "icebreaker", "--sram"], "writes only flash, not sram"),
    (["--board", "nosuch"], "unknown board 'nosuch'"),
])
def test_refusals(argv, message, bitstream, capsys):
    assert main(["flash", *argv, "--bitstream", str(bitstream), "--dry-run"]) == 2
    assert message in capsys.readouterr().err


def test_a_missing_bitstream_is_named(tmp_path, capsys):
    assert main(["flash", "--board", "ulx3s-25f", "--bitstream", str(tmp_path / "no.bit")]) == 2
    assert "no.bit: no such file" in capsys.readouterr().err


def test_no_board_attached_is_a_clear_error(bitstream, capsys):
    try:
        loader()
    except FlashError as e:
        if shutil.which("openFPGALoader") is None:
            pytest.fail(f"openFPGALoader should run after scripts/setup.sh: {e}")
        raise
    assert main(["flash", "--board", "ulx3s-85f", "--bitstream", str(bitstream)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("onebit flash: openFPGALoader could not program the ulx3s-85f")
    assert "plugged in" in err and "Traceback" not in err
