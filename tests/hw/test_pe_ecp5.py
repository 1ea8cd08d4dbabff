"""The ECP5 PE (a registered MULT18X18D Instance) is formally equivalent to the simulated PE.

:class:`hw.pe.PE` builds its product with :func:`hw.dsp.registered_product`: ``a * b`` into a
fabric register everywhere except on ECP5, where it is a MULT18X18D with the output register on.
Simulation only ever runs the first version, so the second is proved equivalent to it with
Yosys, as in ``tests/hw/test_dsp_ecp5.py`` (which holds the behavioural MULT18X18D model and
states what the proof establishes): every register and output of the two PEs agree on every
cycle, reset included.
"""

import re

import pytest
from amaranth.back import rtlil
from test_dsp_ecp5 import ECP5, prove

from boards.synth import SynthTarget
from hw.pe import PE


def _rtlil(in_width, acc_width, name, platform):
    return rtlil.convert(PE(in_width, acc_width), name=name, platform=platform)


def _prove(tmp_path, gold_il, gate_il):
    # The ECP5 PE's own `first` and `last` registers are TRELLIS_FF instances
    # (hw.fanout.register_copies), which prove's models include.
    return prove(tmp_path, gold_il, gate_il, "pe_gold", "pe_gate")


@pytest.mark.parametrize("in_width, acc_width", [(8, 20), (4, 9), (5, 14), (16, 40)])
def test_ecp5_pe_equivalent_to_simulated_pe(tmp_path, in_width, acc_width):
    gate = _rtlil(in_width, acc_width, "pe_gate", ECP5)
    assert gate.count("cell \\MULT18X18D ") == 1
    assert gate.count("cell \\TRELLIS_FF ") == 2
    assert "$mul" not in gate
    rc, log = _prove(tmp_path, _rtlil(in_width, acc_width, "pe_gold", None), gate)
    assert rc == 0, log[-3000:]
    assert "Equivalence successfully proven!" in log
    # The proof covers the multiplier: the PE's product register was paired with the DSP's
    # output register, and every pair (registers and outputs, all bits) was proven.
    top = 2 * in_width - 1
    assert re.search(rf"prod_gate \(\\mult\.p_gate \[{top}:0\]\) -> prod", log)
    found = int(re.search(r"Found (\d+) \$equiv cells in equiv", log)[1])
    # a, b, f, prod, f_prod, acc, slot and the outputs, bit by bit: well over 2 * 2 * in_width.
    assert found > 4 * in_width + 3 * acc_width
    assert f"Of those cells {found} are proven and 0 are unproven." in log


# Mutations of the Instance's wiring in the ECP5 PE's RTLIL, each with the operand width it is
# applied at: each must make the proof fail. The sign mutations need in_width >= 10: below that,
# the 2 * in_width bits of P that the PE keeps do not depend on SIGNEDx or the upper A/B bits.
# Operand-bit mutations use a narrow PE, because SAT finds multiplier counterexamples slowly
# (about a minute at 10 bits, against under a second at 5).
_MUTATIONS = {
    "swap A0/A1": (5, [("connect \\A0 \\a_out [0]", "connect \\A0 \\a_out [1]"),
                       ("connect \\A1 \\a_out [1]", "connect \\A1 \\a_out [0]")]),
    "swap P0/P1": (5, [("connect \\P1 ", "connect \\P_ "), ("connect \\P0 ", "connect \\P1 "),
                       ("connect \\P_ ", "connect \\P0 ")]),
    "B zero-extended": (10, [("connect \\B10 \\b_out [9]", "connect \\B10 1'0")]),
    "unsigned A": (10, [("connect \\SIGNEDA 1'1", "connect \\SIGNEDA 1'0")]),
    "no reset": (5, [("connect \\RST0 \\rst [0]", "connect \\RST0 1'0")]),
    "clock disabled": (5, [("connect \\CE0 1'1", "connect \\CE0 1'0")]),
    "cascade input": (5, [("connect \\SOURCEB 1'0", "connect \\SOURCEB 1'1")]),
}


@pytest.mark.parametrize("mutation", sorted(_MUTATIONS))
def test_miswired_instance_fails_the_proof(tmp_path, mutation):
    in_width, edits = _MUTATIONS[mutation]
    acc_width = 2 * in_width + 4
    gate = _rtlil(in_width, acc_width, "pe_gate", ECP5)
    for old, new in edits:
        assert gate.count(old) == 1, old
        gate = gate.replace(old, new)
    rc, log = _prove(tmp_path, _rtlil(in_width, acc_width, "pe_gold", None), gate)
    assert rc != 0
    assert re.search(r"Of those cells \d+ are proven and [1-9]\d* are unproven", log), log[-2000:]


def test_unmodelled_configuration_is_refused(tmp_path):
    gate = _rtlil(8, 20, "pe_gate", ECP5)
    old = 'parameter \\REG_OUTPUT_CLK "CLK0"'
    assert gate.count(old) == 1
    rc, log = _prove(tmp_path, _rtlil(8, 20, "pe_gold", None),
                     gate.replace(old, 'parameter \\REG_OUTPUT_CLK "NONE"'))
    assert rc != 0
    assert "MULT18X18D_configuration_not_modelled" in log


@pytest.mark.parametrize("platform", [None, SynthTarget.for_family("ice40"), object()])
def test_other_targets_multiply_in_fabric(platform):
    text = _rtlil(8, 20, "pe", platform)
    assert "MULT18X18D" not in text
    assert "$mul" in text
