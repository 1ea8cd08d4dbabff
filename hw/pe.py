"""Processing element: one registered INT8 x INT8 multiply-accumulate of the systolic array."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .dsp import is_ice40, registered_product
from .fanout import register_copies

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

    The product register is :func:`hw.dsp.registered_product`: on ECP5 (``platform.family ==
    "ecp5"``) the output register of a signed MULT18X18D (synchronous reset from the domain's
    reset), elsewhere (simulation, iCE40, no platform) ``a * b`` into a fabric register, which
    ``synth_ice40 -dsp`` maps onto an SB_MAC16. Both are the same registered product, with the
    same latency and reset value; ``tests/hw/test_pe_ecp5.py`` proves the two PEs equivalent.

    The drain chain runs upwards, one slot per element, against the direction in which a tile's
    wavefront moves down the column: a result captured in row r reaches the top ``2r + 1`` cycles
    later, so a column emits one result every second cycle and never overwrites a result in
    flight, provided that consecutive tiles finish at least ``2R - 1`` cycles apart (the GEMM engine
    enforces this).

    With ``external_product`` the product register is not in the element: the array builds it
    from ``a_out`` and ``b_out`` (two elements' products in one DSP block, see
    :func:`hw.dsp.registered_product_pair`) and feeds it back on ``prod``, with the same latency.

    Parameters
    ----------
    in_width : int
        Signed operand width.
    acc_width : int
        Signed accumulator width; the caller guarantees the sum cannot overflow it.
    external_product : bool
        Take the product on ``prod`` instead of building it.

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
    prod : In(signed(2 * in_width))
        Only with ``external_product``: ``a_out * b_out`` one cycle later, from a register.

    Latency: an operand pair is multiplied 1 cycle after it arrives and accumulated 2 cycles
    after; the result of a tile is in the drain slot 4 cycles after its ``last`` pair arrives.
    Throughput: one MAC per cycle.
    """

    def __init__(self, in_width, acc_width, *, external_product=False):
        self.in_width = in_width
        self.acc_width = acc_width
        self.external_product = external_product
        ports = {
            "a_in": In(signed(in_width)),
            "f_in": In(Flags),
            "b_in": In(signed(in_width)),
            "a_out": Out(signed(in_width)),
            "f_out": Out(Flags),
            "b_out": Out(signed(in_width)),
            "d_in": In(drain_layout(acc_width)),
            "d_out": Out(drain_layout(acc_width)),
        }
        if external_product:
            ports["prod"] = In(signed(2 * in_width))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()

        a = Signal(signed(self.in_width))
        b = Signal(signed(self.in_width))
        f = Signal(Flags)
        m.d.sync += [a.eq(self.a_in), b.eq(self.b_in), f.valid.eq(self.f_in.valid)]
        # `first` and `last` are the same for every row, so the elements on one anti-diagonal
        # hold the same bits: Yosys would merge their registers into one flip-flop that drives
        # elements across the die. Each element keeps its own (hw.fanout.register_copies).
        for field in ("first", "last"):
            (reg,) = register_copies(m, platform, getattr(self.f_in, field), 1, name=f"f_{field}")
            m.d.comb += getattr(f, field).eq(reg)
        m.d.comb += [self.a_out.eq(a), self.b_out.eq(b), self.f_out.eq(f)]

        # Stage 1: the product, registered (the multiplier's own pipeline register).
        f_prod = Signal(Flags)
        m.d.sync += f_prod.eq(f)
        if self.external_product:
            prod = self.prod
        else:
            prod = Signal(signed(2 * self.in_width))
            registered_product(m, platform, a, b, prod, name="mult")

        # Stage 2: accumulate; `first` restarts the sum.
        acc = Signal(signed(self.acc_width))
        total = Signal(signed(self.acc_width))
        if is_ice40(platform):
            # A load after the adder: each bit's sum and load fit one LUT4 (acc, prod, first and
            # the carry in), and the carry chain takes acc and prod directly.
            m.d.comb += total.eq(Mux(f_prod.first, prod, acc + prod))
        else:
            # The old sum gated to zero before the adder.
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
