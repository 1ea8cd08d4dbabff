"""INT32 -> INT8 requantizer: dyadic multiply, round-half-up shift, saturate."""

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["saturate", "Requantizer"]


def saturate(value, width):
    """Clamp a signed value to the signed ``width``-bit range."""
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    return Mux(value > hi, hi, Mux(value < lo, lo, value))


class Requantizer(wiring.Component):
    """Requantizes lanes of accumulators: ``clamp((acc*m + 2**(s-1)) >> s, -128, 127)``.

    Parameters
    ----------
    lanes : int
        Elements per beat.
    acc_width : int
        Signed input width.
    cfg : RequantConfig
        Multiplier width and output width.

    Members
    -------
    i : In(stream.Signature(ArrayLayout(signed(acc_width), lanes)))
    o : Out(stream.Signature(ArrayLayout(signed(out_width), lanes)))
    multiplier : In(unsigned(mult_width))
        ``m``; held constant while data flows.
    shift : In(range(acc_width + mult_width))
        ``s``; held constant while data flows.

    Latency: 4 cycles (multiply, add the rounding constant, shift, saturate, each registered).
    Throughput: one beat per cycle; a stalled output stalls the pipeline.
    """

    def __init__(self, lanes, acc_width, cfg):
        self.lanes, self.acc_width = lanes, acc_width
        self.mult_width, self.out_width = cfg.mult_width, cfg.out_width
        self.prod_width = acc_width + cfg.mult_width + 1
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(signed(acc_width), lanes))),
            "o": Out(stream.Signature(data.ArrayLayout(signed(cfg.out_width), lanes))),
            "multiplier": In(unsigned(cfg.mult_width)),
            "shift": In(range(acc_width + cfg.mult_width)),
        })

    def elaborate(self, platform):
        m = Module()
        n, pw = self.lanes, self.prod_width

        # A four-stage pipeline; every stage advances when the output is free or taken.
        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance)]
        valid = [Signal(name=f"valid_{s}") for s in range(3)]

        # intformer's one rounding rule, the twin of sim.golden.round_shift:
        # (x + 2**(s-1)) >> s, arithmetic, exact for s = 0. The rounding constant depends only on
        # the shift register, so it is computed once and registered.
        half = Signal(unsigned(pw))
        m.d.sync += half.eq((Const(1, pw) << self.shift) >> 1)

        prod = Signal(data.ArrayLayout(signed(pw), n))
        rounded = Signal(data.ArrayLayout(signed(pw), n))
        shifted = Signal(data.ArrayLayout(signed(pw), n))
        with m.If(advance):
            m.d.sync += [valid[0].eq(self.i.valid), valid[1].eq(valid[0]), valid[2].eq(valid[1]),
                         self.o.valid.eq(valid[2])]
            for j in range(n):
                m.d.sync += [
                    prod[j].eq(self.i.payload[j] * self.multiplier),
                    rounded[j].eq(prod[j] + half),
                    shifted[j].eq(rounded[j] >> self.shift),
                    self.o.payload[j].eq(saturate(shifted[j], self.out_width)),
                ]
        return m
