"""On iCE40, :func:`hw.dsp.registered_product_pair` (two products in one SB_MAC16 Instance, in
its dual 8x8 mode with both product registers on) is formally equivalent to its simulated
version (two ``a * b`` into reset-less fabric registers).

The proof is the one of ``tests/hw/test_dsp_ecp5.py`` (:func:`prove`: every register and output
of the two designs agree on every cycle, reset included), with the SB_MAC16 replaced by Yosys'
own simulation model (``+/ice40/cells_sim.v``, the model the Yosys iCE40 flow and its users
simulate with). In 8x8 mode that model sign-extends both bytes of a port when ``A_SIGNED`` (or
``B_SIGNED``) is set, so two signed 8 x 8 products need no correction, as in MARLANN's
``marlann_compute_mul2``. What the proof establishes: the Instance's wiring (operand bytes and
their extension, ``A_SIGNED``/``B_SIGNED``, the mode, the registers, ``CE``, the resets, the
halves of ``O``) is right, *given* that the primitive behaves as Yosys' model says.
``tests/hw/test_systolic_ice40.py`` proves the array built on it.
"""

import re

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from test_dsp_ecp5 import ECP5, assert_proven, prove

from boards.synth import SynthTarget
from hw.dsp import registered_product_pair

ICE40 = SynthTarget.for_family("ice40")
#: The Yosys command reading the SB_MAC16 model (only the instantiated parameterization is
#: elaborated).
ICE40_MODELS = "read_verilog -defer +/ice40/cells_sim.v"


def prove_ice40(tmp_path, gold_il, gate_il, gold, gate, seq=4):
    """:func:`test_dsp_ecp5.prove` with the iCE40 primitive models."""
    return prove(tmp_path, gold_il, gate_il, gold, gate, seq, models=ICE40_MODELS)


class _Pair(wiring.Component):
    """``p0 <= a0 * b0`` and ``p1 <= a1 * b1`` (when ``en``) through
    :func:`registered_product_pair`, as a component."""

    def __init__(self, a_shape, b_shape, p_shape, *, enable=True, a1_shape=None):
        self.enable = enable
        ports = {"a0": In(a_shape), "b0": In(b_shape), "a1": In(a1_shape or a_shape),
                 "b1": In(b_shape), "p0": Out(p_shape), "p1": Out(p_shape)}
        if enable:
            ports["en"] = In(1)
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        p0 = Signal(self.p0.shape(), reset_less=True)
        p1 = Signal(self.p1.shape(), reset_less=True)
        registered_product_pair(m, platform, (self.a0, self.b0, p0), (self.a1, self.b1, p1),
                                en=self.en if self.enable else None, name="mul")
        m.d.comb += [self.p0.eq(p0), self.p1.eq(p1)]
        return m


def _pair_rtlil(name, platform, *args, **kwargs):
    return rtlil.convert(_Pair(*args, **kwargs), name=name, platform=platform)


# (a, b, p) shapes: INT8, each mix of signedness, narrow operands, products truncated or extended.
_SHAPES = {
    "s8 x s8 -> s16": (signed(8), signed(8), signed(16)),
    "s8 x s8 -> s24 (extended)": (signed(8), signed(8), signed(24)),
    "u8 x u8 -> u16": (unsigned(8), unsigned(8), unsigned(16)),
    "s8 x u8 -> s17 (extended)": (signed(8), unsigned(8), signed(17)),
    "u8 x s8 -> s16": (unsigned(8), signed(8), signed(16)),
    "s5 x u3 -> s8": (signed(5), unsigned(3), signed(8)),
    "s8 x s8 -> u10 (truncated)": (signed(8), signed(8), unsigned(10)),
}


@pytest.mark.parametrize("shapes", sorted(_SHAPES))
@pytest.mark.parametrize("enable", [True, False])
def test_ice40_pair_equivalent_to_simulated(tmp_path, shapes, enable):
    args = _SHAPES[shapes]
    gate = _pair_rtlil("pair_gate", ICE40, *args, enable=enable)
    assert gate.count("cell \\SB_MAC16 ") == 1
    assert "$mul" not in gate
    rc, log = prove_ice40(tmp_path, _pair_rtlil("pair_gold", None, *args, enable=enable), gate,
                          "pair_gold", "pair_gate")
    # The outputs, which only the block drives in gate, were compared bit by bit (the names
    # the gate's side takes vary: p0, or the model's rG or Ol, and rF or Oh for p1).
    assert re.search(r"^Presumably equivalent wires: p0_gold .* -> p0$", log, re.M)
    assert re.search(r"^Presumably equivalent wires: p1_gold .* -> p1$", log, re.M)
    assert_proven(rc, log, 2 * args[2].width)


# Mutations of the Instance in the s8 x s8 -> s16 pair's RTLIL: each must make the proof fail.
_MUTATIONS = {
    # 16x16 mode: the bottom byte of each port is then unsigned.
    "16x16 mode": [("parameter \\MODE_8x8 1'1", "parameter \\MODE_8x8 1'0")],
    "unsigned A": [("parameter \\A_SIGNED 1'1", "parameter \\A_SIGNED 1'0")],
    "unsigned B": [("parameter \\B_SIGNED 1'1", "parameter \\B_SIGNED 1'0")],
    "unregistered top product": [("parameter \\TOP_8x8_MULT_REG 1'1",
                                  "parameter \\TOP_8x8_MULT_REG 1'0")],
    "halves swapped": [("connect \\A { \\a1 [7:0] \\a0 [7:0] }",
                        "connect \\A { \\a0 [7:0] \\a1 [7:0] }")],
    "no enable": [("connect \\CE \\en [0]", "connect \\CE 1'1")],
    "reset": [("connect \\IRSTBOT 1'0", "connect \\IRSTBOT \\rst [0]")],
    "accumulator output": [("parameter \\BOTOUTPUT_SELECT 2'10",
                            "parameter \\BOTOUTPUT_SELECT 2'01")],
}


@pytest.mark.parametrize("mutation", sorted(_MUTATIONS))
def test_miswired_pair_fails_the_proof(tmp_path, mutation):
    args = _SHAPES["s8 x s8 -> s16"]
    gate = _pair_rtlil("pair_gate", ICE40, *args)
    for old, new in _MUTATIONS[mutation]:
        assert gate.count(old) == 1, old
        gate = gate.replace(old, new)
    rc, log = prove_ice40(tmp_path, _pair_rtlil("pair_gold", None, *args), gate,
                          "pair_gold", "pair_gate")
    assert rc != 0
    assert re.search(r"Of those cells \d+ are proven and [1-9]\d* are unproven", log), \
        log[-2000:]


@pytest.mark.parametrize("platform", [None, ECP5, object()])
def test_other_targets_build_two_products(platform):
    text = _pair_rtlil("pair", platform, signed(8), signed(8), signed(16))
    assert "SB_MAC16" not in text
    assert text.count("MULT18X18D") == (2 if platform is ECP5 else 0)
    assert text.count("$mul") == (0 if platform is ECP5 else 2)


@pytest.mark.parametrize("shapes, a1_shape", [
    ((signed(9), signed(8), signed(17)), None),              # wider than a byte
    ((signed(8), signed(8), signed(16)), unsigned(8)),        # one A_SIGNED for two signednesses
])
def test_unpairable_operands_multiply_in_fabric(shapes, a1_shape):
    text = _pair_rtlil("pair", ICE40, *shapes, a1_shape=a1_shape)
    assert "SB_MAC16" not in text
    assert text.count("$mul") == 2


def test_pair_products_must_be_reset_less():
    with pytest.raises(ValueError, match=r"^Product p of a pair must be reset-less$"):
        registered_product_pair(None, ICE40, (Signal(8), Signal(8), Signal(16, name="p")),
                                (Signal(8), Signal(8), Signal(16, reset_less=True)), name="x")
    with pytest.raises(TypeError, match=r"^Product must be a Signal, not "):
        registered_product_pair(None, ICE40, (Signal(8), Signal(8), Signal(16)[:8]),
                                (Signal(8), Signal(8), Signal(16, reset_less=True)), name="x")
