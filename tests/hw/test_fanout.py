"""Register copies (:func:`hw.fanout.register_copies`): on ECP5 TRELLIS_FF instances that Yosys
keeps apart, proved equivalent to the ordinary registers simulation runs; elsewhere ordinary
registers; in a board netlist, one flip-flop per copy after synthesis.

The proof is the one of ``tests/hw/test_dsp_ecp5.py`` (:func:`prove`), with its behavioural
TRELLIS_FF (``TRELLIS_FF_MODEL``: the configuration the helper uses, and no other). The proof
shows the instances are wired as the simulated registers, given that the primitive behaves so.
"""

import shlex
import subprocess

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator
from test_dsp_ecp5 import ECP5, assert_proven, prove

from boards.toolchain import tool_command
from hw.fanout import register_copies, register_word_copies


class _Copies(wiring.Component):
    """A decoded select and its copies, each gating a group of data bits into an output."""

    def __init__(self, copies):
        self.copies = copies
        super().__init__({"sel": In(2), "d": In(4 * copies), "q": Out(4 * copies)})

    def elaborate(self, platform):
        m = Module()
        regs = register_copies(m, platform, self.sel == 2, self.copies, name="owns")
        for i, reg in enumerate(regs):
            with m.If(reg):
                m.d.comb += self.q[4 * i:4 * i + 4].eq(self.d[4 * i:4 * i + 4])
        return m


def _rtlil(name, platform, copies):
    return rtlil.convert(_Copies(copies), name=name, platform=platform)


@pytest.mark.parametrize("copies", [1, 3])
def test_ecp5_copies_equivalent_to_simulated(tmp_path, copies):
    gate = _rtlil("copies_gate", ECP5, copies)
    assert gate.count("cell \\TRELLIS_FF ") == copies
    rc, log = prove(tmp_path, _rtlil("copies_gold", None, copies), gate, "copies_gold",
                    "copies_gate")
    assert_proven(rc, log, 4 * copies)


@pytest.mark.parametrize("old, new", [
    ("connect \\LSR \\rst [0]", "connect \\LSR 1'0"),       # no reset
    ("parameter \\SRMODE \"LSR_OVER_CE\"", "parameter \\SRMODE \"ASYNC\""),   # not modelled
])
def test_miswired_copy_fails_the_proof(tmp_path, old, new):
    gate = _rtlil("copies_gate", ECP5, 1)
    assert gate.count(old) == 1, old
    rc, log = prove(tmp_path, _rtlil("copies_gold", None, 1), gate.replace(old, new),
                    "copies_gold", "copies_gate")
    assert rc != 0
    assert "Equivalence successfully proven!" not in log


def test_copies_survive_synthesis(tmp_path):
    # Yosys merges equal registers (opt_merge), keep on a signal or not; the instances stay.
    (tmp_path / "copies.il").write_text(_rtlil("top", ECP5, 4))
    argv = [*shlex.split(tool_command("YOSYS")), "-q", "-p",
            "read_rtlil copies.il; synth_ecp5 -top top; tee -q -o stat.txt stat"]
    subprocess.run(argv, cwd=tmp_path, check=True, stdin=subprocess.DEVNULL,
                   capture_output=True, timeout=300)
    stat = (tmp_path / "stat.txt").read_text()
    assert any(line.split() == ["4", "TRELLIS_FF"] for line in stat.splitlines()), stat


def test_other_targets_use_registers():
    text = _rtlil("copies", None, 3)
    assert "TRELLIS_FF" not in text
    assert text.count("cell $dff") + text.count("cell $sdff") >= 1


def test_copies_follow_the_value():
    dut = _Copies(2)
    seen = _outputs(dut, [{"sel": sel, "d": d}
                          for sel, d in [(2, 0x5A), (1, 0xFF), (2, 0x3C), (0, 0x11)]])
    # Each copy holds the select of the previous edge: the data pass after a cycle of sel == 2.
    assert seen == [0x5A, 0x00, 0x3C, 0x00]


def _outputs(dut, steps):
    """``dut.q`` after each clock edge, the inputs of ``steps`` (port name to value) set
    before it."""
    seen = []

    async def bench(ctx):
        for inputs in steps:
            for name, value in inputs.items():
                ctx.set(getattr(dut, name), value)
            await ctx.tick()
            seen.append(ctx.get(dut.q))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return seen


def test_bad_copies():
    # Checked before anything is added to the module (none is given).
    with pytest.raises(ValueError, match=r"^Register copies are of one bit, not 2 "):
        register_copies(None, None, Signal(2), 2, name="x")
    with pytest.raises(ValueError, match=r"^Register copies must be a positive integer, not 0$"):
        register_copies(None, None, Signal(), 0, name="x")


class _WordCopies(wiring.Component):
    """A word and its register copies, side by side on ``q``."""

    def __init__(self, copies):
        self.copies = copies
        super().__init__({"d": In(3), "q": Out(3 * copies)})

    def elaborate(self, platform):
        m = Module()
        regs = register_word_copies(m, platform, self.d, self.copies, name="word")
        for i, reg in enumerate(regs):
            m.d.comb += self.q[3 * i:3 * i + 3].eq(reg)
        return m


def test_word_copies_are_kept_bit_by_bit():
    # One TRELLIS_FF per bit and copy (the buffers' slice addresses), none merged.
    text = rtlil.convert(_WordCopies(2), name="word", platform=ECP5)
    assert text.count("cell \\TRELLIS_FF ") == 6


def test_word_copies_follow_the_value():
    seen = _outputs(_WordCopies(2), [{"d": d} for d in [5, 2, 7]])
    # Both copies hold the word of the previous edge, reset to 0.
    assert seen == [5 | 5 << 3, 2 | 2 << 3, 7 | 7 << 3]
