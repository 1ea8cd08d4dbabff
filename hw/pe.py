"""Processing element: one registered INT8 x INT8 multiply-accumulate of the systolic array."""

from amaranth.hdl import ClockSignal, Const, Instance, Module, Mux, ResetSignal, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Flags", "drain_layout", "PE"]


class Flags(data.Struct):
    """Control bits that travel along an array row beside the ``a`` operand.

    ``valid`` marks a real element (not a bubble or a padding row); ``first`` and ``last`` mark
    k = 0 and k = K-1 of an output tile.
    """

    valid: 1
    first: 1
    last: 1


def drain_layout(acc_width):
    """One slot of the drain chain: a finished accumulator and whether it holds a result."""
    return data.StructLayout({"valid": 1, "data": signed(acc_width)})


class PE(wiring.Component):
    """Output-stationary multiply-accumulate element.

    Operands enter from the left (``a``, with the :class:`Flags`) and from above (``b``); both
    are registered and passed on unchanged to the right and below. The product of the registered
    operands is registered in turn (so the multiplier and the adder are separate pipeline stages,
    which maps one multiplier onto an ECP5 MULT18X18D or iCE40 SB_MAC16) and added to the
    accumulator on the next cycle. ``first`` restarts the sum; on ``last`` the finished sum is
    captured into this element's slot of the drain chain.

    How the product is built depends on the target, read from ``platform.family`` at
    elaboration. For ``"ecp5"`` (and ``in_width <= 18``) the element instantiates a signed
    MULT18X18D with its output register in use (``REG_OUTPUT_CLK="CLK0"``, synchronous reset
    from the domain's reset): Yosys does not pack a fabric register into the DSP, and the DSP's
    combinational delay plus routing would limit Fmax. Everywhere else (simulation, iCE40, no
    platform) it is ``a * b`` into a fabric register, which ``synth_ice40 -dsp`` maps onto an
    SB_MAC16. Both are the same registered product, with the same latency and reset value;
    ``tests/hw/test_pe_ecp5.py`` proves the two equivalent.

    The drain chain runs upwards, one slot per element, against the direction in which a tile's
    wavefront moves down the column: a result captured in row r reaches the top ``2r + 1`` cycles
    later, so a column emits one result every second cycle and never overwrites a result in
    flight, provided that consecutive tiles finish at least ``2R - 1`` cycles apart (the GEMM engine
    enforces this).

    Parameters
    ----------
    in_width : int
        Signed operand width.
    acc_width : int
        Signed accumulator width; the caller guarantees the sum cannot overflow it.

    Members
    -------
    a_in : In(signed(in_width)), f_in : In(Flags), b_in : In(signed(in_width))
        Operands and flags from the left and from above.
    a_out : Out(signed(in_width)), f_out : Out(Flags), b_out : Out(signed(in_width))
        The same, one cycle later, to the right and below.
    d_in : In(drain_layout(acc_width))
        Drain slot of the element below.
    d_out : Out(drain_layout(acc_width))
        This element's drain slot, read by the element above.

    Latency: an operand pair is multiplied 1 cycle after it arrives and accumulated 2 cycles
    after; the result of a tile is in the drain slot 4 cycles after its ``last`` pair arrives.
    Throughput: one MAC per cycle.
    """

    def __init__(self, in_width, acc_width):
        self.in_width = in_width
        self.acc_width = acc_width
        super().__init__({
            "a_in": In(signed(in_width)),
            "f_in": In(Flags),
            "b_in": In(signed(in_width)),
            "a_out": Out(signed(in_width)),
            "f_out": Out(Flags),
            "b_out": Out(signed(in_width)),
            "d_in": In(drain_layout(acc_width)),
            "d_out": Out(drain_layout(acc_width)),
        })

    def elaborate(self, platform):
        m = Module()

        a = Signal(signed(self.in_width))
        b = Signal(signed(self.in_width))
        f = Signal(Flags)
        m.d.sync += [a.eq(self.a_in), b.eq(self.b_in), f.eq(self.f_in)]
        m.d.comb += [self.a_out.eq(a), self.b_out.eq(b), self.f_out.eq(f)]

        # Stage 1: the product, registered (the multiplier's own pipeline register).
        prod = Signal(signed(2 * self.in_width))
        f_prod = Signal(Flags)
        m.d.sync += f_prod.eq(f)
        if getattr(platform, "family", None) == "ecp5" and self.in_width <= 18:
            self._ecp5_mult(m, a, b, prod)
        else:
            m.d.sync += prod.eq(a * b)

        # Stage 2: accumulate. `first` gates the old sum to zero rather than muxing in a load.
        acc = Signal(signed(self.acc_width))
        total = Signal(signed(self.acc_width))
        m.d.comb += total.eq(Mux(f_prod.first, 0, acc) + prod)
        with m.If(f_prod.valid):
            m.d.sync += acc.eq(total)

        # Drain slot: capture a finished sum from the accumulator the cycle after its last
        # product (so the adder does not feed the slot's multiplexer), otherwise take the slot
        # below. The accumulator holds the sum for that one cycle even if the next tile's first
        # product arrives meanwhile.
        slot = Signal(drain_layout(self.acc_width))
        done = Signal()
        m.d.sync += done.eq(f_prod.valid & f_prod.last)
        with m.If(done):
            m.d.sync += [slot.valid.eq(1), slot.data.eq(acc)]
        with m.Else():
            m.d.sync += slot.eq(self.d_in)
        m.d.comb += self.d_out.eq(slot)

        return m

    def _ecp5_mult(self, m, a, b, prod):
        """A MULT18X18D computing ``prod <= a * b``: operands sign-extended to 18 bits, input and
        pipeline registers bypassed, output register on CLK0/CE0/RST0 (synchronous reset)."""
        a18, b18 = Signal(signed(18)), Signal(signed(18))
        p36 = Signal(signed(36))
        ports = {
            "i_SIGNEDA": Const(1, 1), "i_SIGNEDB": Const(1, 1),
            "i_SOURCEA": Const(0, 1), "i_SOURCEB": Const(0, 1),
            "i_CLK0": ClockSignal(), "i_CE0": Const(1, 1),
            "i_RST0": ResetSignal(allow_reset_less=True),
        }
        for k in (1, 2, 3):
            ports.update({f"i_CLK{k}": Const(0, 1), f"i_CE{k}": Const(1, 1),
                          f"i_RST{k}": Const(0, 1)})
        for i in range(18):
            ports.update({f"i_A{i}": a18[i], f"i_B{i}": b18[i], f"i_C{i}": Const(0, 1)})
        for i in range(36):
            ports[f"o_P{i}"] = p36[i]
        m.submodules.mult = Instance(
            "MULT18X18D",
            p_REG_INPUTA_CLK="NONE", p_REG_INPUTB_CLK="NONE", p_REG_INPUTC_CLK="NONE",
            p_REG_PIPELINE_CLK="NONE", p_REG_OUTPUT_CLK="CLK0", p_REG_OUTPUT_CE="CE0",
            p_REG_OUTPUT_RST="RST0", p_RESETMODE="SYNC", p_GSR="DISABLED", **ports)
        # Assignments sign-extend a and b; the product of two in_width-bit signed values fits in
        # 2 * in_width bits, so dropping P's upper bits is exact.
        m.d.comb += [a18.eq(a), b18.eq(b), prod.eq(p36[:len(prod)])]
