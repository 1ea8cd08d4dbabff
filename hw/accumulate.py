"""RUN LINEAR's partial sums: C's old words added to the engine's rows (shifted for a high
digit), a registered stage."""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .fanout import register_copies

__all__ = ["Accumulate"]


class Accumulate(wiring.Component):
    """Adds C's old words to the engine's rows, shifted for a high digit: the on-chip sum of a
    LINEAR split into runs (:class:`hw.isa.LinMode`).

    Each row of ``i`` leaves as ``(i[j] << s) + old[j]``, ``s`` ``in_width`` with ``shift``
    else 0. While ``accumulate`` is high it waits for its word of ``old`` (C's word at the
    address the row will be written to, from a :class:`~hw.reader.BufferReader` that reads C
    ahead of the drain, in the same order), ``old[j]`` a signed ``acc_width``-bit lane;
    otherwise ``old[j]`` is 0 and ``old`` is not read. The sum is ``eacc`` bits wide, the
    engine's accumulator width, and wraps there (the host keeps every sum within
    ``acc_width <= eacc`` bits, where it is exact). Shifting the run's products rather than
    C's word lets the host run a K chunk's two digits one after the other with the chunk's
    weights held in B.

    The stage is one register of a row: the sum (or the row) is registered with its ``valid``,
    and the next row is taken when the register is empty or leaves on the same cycle (``i.ready
    = ~o.valid | o.ready``, and ``old.valid`` with ``accumulate``). The old word arrives
    registered (the reader's register slice); the add's operand select is one LUT before the
    adder, and so is the row's shift select. ``accumulate`` and ``shift`` are registered here,
    a copy for each half of the lanes (:func:`hw.fanout.register_copies`); they hold during a
    run.

    Parameters
    ----------
    lanes : int
        ``C``, the lanes of a row.
    acc_width : int
        Bits of a lane of C (``cfg.acc_width``).
    eacc : int
        Bits of a lane of a row (the engine's ``acc_width``, at least ``acc_width``).
    shift : int
        The digit shift, ``array.in_width``.

    Members
    -------
    i : In(stream.Signature(ArrayLayout(signed(eacc), lanes)))
        The engine's rows.
    old : In(stream.Signature(unsigned(lanes * acc_width)))
        C's old words, one per row, in the rows' order.
    o : Out(stream.Signature(ArrayLayout(signed(eacc), lanes)))
        The sums.
    accumulate, shift : In(1)
        Add ``old``; shift the rows by ``in_width`` (for the run in progress). Read a cycle
        late.

    Latency: 1 cycle. Throughput: one row per cycle.
    """

    def __init__(self, lanes, acc_width, eacc, shift):
        self.lanes, self.acc_width, self.eacc, self.shift_by = lanes, acc_width, eacc, shift
        rows = stream.Signature(data.ArrayLayout(signed(eacc), lanes))
        super().__init__({
            "i": In(rows),
            "old": In(stream.Signature(unsigned(lanes * acc_width))),
            "o": Out(rows),
            "accumulate": In(1),
            "shift": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        C = self.lanes
        acc, *acc_lanes = register_copies(m, platform, self.accumulate, 3, name="accumulate")
        shift_lanes = register_copies(m, platform, self.shift, 2, name="digit_shift")
        advance = ~self.o.valid | self.o.ready
        ready = advance & (self.old.valid | ~acc)
        m.d.comb += [self.i.ready.eq(ready), self.old.ready.eq(advance & self.i.valid & acc)]
        with m.If(self.i.valid & ready):
            m.d.sync += self.o.valid.eq(1)
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        old = data.ArrayLayout(signed(self.acc_width), C)(self.old.payload)
        held = Signal(data.ArrayLayout(signed(self.eacc), C), reset_less=True)
        m.d.comb += self.o.payload.eq(held)
        with m.If(advance):
            for j in range(C):
                half = 2 * j // C
                row = self.i.payload[j]
                row = Mux(shift_lanes[half], row << self.shift_by, row)
                m.d.sync += held[j].eq(row + Mux(acc_lanes[half], old[j], 0))
        return m
