"""A register slice for streams: cuts the combinational ``valid``/``ready`` path between units."""

from types import SimpleNamespace

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .dsp import is_ice40

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

    Latency: 1 cycle. Throughput: one beat per cycle, in any pattern of stalls.

    Parameters
    ----------
    shape : shape-like
        The payload shape.

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

    def __init__(self, shape):
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
        skid_valid = Signal()
        m.d.comb += self.i.ready.eq(~skid_valid)
        with m.If(self.o.ready | ~self.o.valid):      # the main register moves
            with m.If(skid_valid):
                m.d.sync += [self.o.payload.eq(skid), self.o.valid.eq(1), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [self.o.payload.eq(self.i.payload), self.o.valid.eq(self.i.valid)]
        with m.Elif(self.i.valid & ~skid_valid):      # stalled: catch the arriving beat
            m.d.sync += skid_valid.eq(1)
        # The skid register follows the input while it is empty, so its (wide) enable is one
        # flip-flop, not the consumer's ready.
        with m.If(~skid_valid):
            m.d.sync += skid.eq(self.i.payload)
        self.formal_view = SimpleNamespace(o=self.o, skid=skid, skid_valid=skid_valid)
        return m
