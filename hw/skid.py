"""A register slice for streams: cuts the combinational ``valid``/``ready`` path between units."""

from types import SimpleNamespace

from amaranth.hdl import Module, Mux, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .dsp import is_ice40
from .fanout import register_copies

__all__ = ["SkidBuffer"]


class SkidBuffer(wiring.Component):
    """A two-entry register slice (a "skid buffer") on a stream.

    ``o.valid``, ``o.payload`` and ``i.ready`` all come straight from flip-flops, so neither the
    producer's ``valid`` nor the consumer's ``ready`` passes through: the logic on each side of the
    slice times separately. The main register holds the beat offered on ``o``; the skid register
    catches the one beat that may arrive in the cycle ``o`` stalls, and ``i.ready`` is low while
    it is full.

    On iCE40 (``platform.family == "iCE40"``) the slice is one register: ``o.valid`` and
    ``o.payload`` still come from flip-flops, but ``i.ready`` is ``~o.valid | o.ready``, so the
    consumer's ``ready`` passes through to the producer. The iCE40 builds run at 24 MHz with
    their Fmax far above it, and there a logic cell per payload bit is what the top's wide data
    paths cost (docs/timing.md); the beats leave on the same cycles whenever the producer
    keeps offering them, as a producer behind a queue does.

    The skid flag selects every payload bit of both registers, so a wide payload spread over the
    die makes it a long net: with ``copies`` the flag is that many flip-flops of its own
    (:func:`hw.fanout.register_copies`), each for a contiguous slice of the payload's bits (a
    lane or a few of an array layout), the handshake from the first.

    Latency: 1 cycle. Throughput: one beat per cycle, in any pattern of stalls.

    Parameters
    ----------
    shape : shape-like
        The payload shape.
    copies : int
        Flip-flops of the skid flag, one for each slice of the payload (1 by default).

    Members
    -------
    i : In(stream.Signature(shape))
        Beats in.
    o : Out(stream.Signature(shape))
        The same beats, in order, one cycle later at the earliest.

    Attributes
    ----------
    formal_view : SimpleNamespace
        Set by ``elaborate``, for the formal proofs (:mod:`formal.views`); no logic of its own.
        ``o``, the main register (the beat offered), and ``skid`` and ``skid_valid``, the skid
        register and its flag.
    """

    def __init__(self, shape, *, copies=1):
        if not isinstance(copies, int) or copies < 1:
            raise ValueError(f"A skid buffer's flag copies must be a positive integer, not "
                             f"{copies!r}")
        self.copies = copies
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
        })

    def elaborate(self, platform):
        m = Module()
        if is_ice40(platform):
            m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
            with m.If(self.i.ready):
                m.d.sync += [self.o.payload.eq(self.i.payload), self.o.valid.eq(self.i.valid)]
            self.formal_view = None
            return m
        skid = Signal.like(self.i.payload, name="skid")
        moves = self.o.ready | ~self.o.valid        # the main register moves
        skid_next = Signal()
        if self.copies == 1:
            flags = [Signal(name="skid_valid")]
            m.d.sync += flags[0].eq(skid_next)
        else:
            flags = register_copies(m, platform, skid_next, self.copies, name="skid_valid")
        skid_valid = flags[0]
        # The skid register fills when the main one stalls with a beat arriving, and empties
        # as the main one moves (taking its beat).
        m.d.comb += [skid_next.eq(~moves & (skid_valid | self.i.valid)),
                     self.i.ready.eq(~skid_valid)]
        with m.If(moves):
            m.d.sync += self.o.valid.eq(skid_valid | self.i.valid)
        bits = [Value.cast(x) for x in (self.i.payload, skid, self.o.payload)]
        step = -(-len(bits[0]) // self.copies)
        for k, flag in enumerate(flags):
            i_bits, skid_bits, o_bits = (b[k * step:(k + 1) * step] for b in bits)
            with m.If(moves):
                m.d.sync += o_bits.eq(Mux(flag, skid_bits, i_bits))
            # The skid register follows the input while it is empty, so its (wide) enable is
            # a flip-flop, not the consumer's ready.
            with m.If(~flag):
                m.d.sync += skid_bits.eq(i_bits)
        self.formal_view = SimpleNamespace(o=self.o, skid=skid, skid_valid=skid_valid)
        return m
