"""The residual add: two tensors at two scales into a third, elementwise."""

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .dsp import registered_product
from .requant import rounding_half, rounding_shift, saturate
from .skid import SkidBuffer

__all__ = ["residual_pair_layout", "Residual"]


def residual_pair_layout(cfg, lanes):
    """A beat of :class:`Residual`'s input: ``lanes`` elements of ``a`` and of ``b``."""
    beat = data.ArrayLayout(signed(cfg.in_width), lanes)
    return data.StructLayout({"a": beat, "b": beat})


class Residual(wiring.Component):
    """Adds two tensors held at two scales into a third: ``y = saturate(round_shift(a*ma +
    b*mb, shift), out_width)`` per lane, the twin of :func:`sim.ops.residual_add`.

    The integer algorithm: two ``in_width x mult_width`` products (signed by unsigned, each
    registered in a DSP block, :func:`hw.dsp.registered_product`), their sum, then intformer's
    one rounding rule (:func:`hw.requant.rounding_shift`: ``+ 2**(shift-1)``, a shift by the
    multiple of 8, by the rest) and a saturation to ``out_width`` bits. The sum is
    ``in_width + mult_width + 2`` bits wide: it holds both products and the rounding constant
    of the largest shift, ``in_width + mult_width``, so nothing wraps.

    Parameters
    ----------
    cfg : ResidualConfig
        Widths.
    lanes : int
        Elements per beat.

    Members
    -------
    i : In(stream.Signature(residual_pair_layout(cfg, lanes)))
        A beat of ``a`` and the matching beat of ``b``.
    o : Out(stream.Signature(ArrayLayout(signed(out_width), lanes)))
        ``y``.
    mult_a, mult_b : In(unsigned(mult_width))
        ``ma`` and ``mb``; held constant while data flows.
    shift : In(range(in_width + mult_width + 1))
        ``shift``; held constant while data flows.

    Latency: 7 cycles: six registered stages (the products, their sum, the three stages of the
    rounding shift, the saturation), then a skid buffer on ``o``, so that ``i.ready`` comes
    from flip-flops. Throughput: one beat per cycle; a stalled output stalls the pipeline.
    """

    def __init__(self, cfg, lanes=1):
        self.cfg, self.lanes = cfg, lanes
        #: Cycles from an input transfer to its output being valid.
        self.latency = 7
        self.sum_width = cfg.in_width + cfg.mult_width + 2
        super().__init__({
            "i": In(stream.Signature(residual_pair_layout(cfg, lanes))),
            "o": Out(stream.Signature(data.ArrayLayout(signed(cfg.out_width), lanes))),
            "mult_a": In(unsigned(cfg.mult_width)),
            "mult_b": In(unsigned(cfg.mult_width)),
            "shift": In(range(cfg.max_shift + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, sw = self.cfg, self.sum_width
        m.submodules.skid = skid = SkidBuffer(self.o.payload.shape())
        wiring.connect(m, skid.o, wiring.flipped(self.o))
        out = skid.i
        advance = Signal()
        m.d.comb += [advance.eq(~out.valid | out.ready), self.i.ready.eq(advance)]
        valid = [Signal(name=f"valid_{s}") for s in range(self.latency - 2)]
        # The rounding constant depends only on the shift register: computed once, registered.
        half = Signal(unsigned(sw))
        m.d.sync += half.eq(rounding_half(self.shift, sw))
        pw = cfg.in_width + cfg.mult_width + 1
        with m.If(advance):
            m.d.sync += [a.eq(b) for a, b in zip([*valid, out.valid], [self.i.valid, *valid],
                                                  strict=True)]
        for j in range(self.lanes):
            pa = Signal(signed(pw), name=f"pa_{j}", reset_less=True)
            pb = Signal(signed(pw), name=f"pb_{j}", reset_less=True)
            total = Signal(signed(sw), name=f"sum_{j}", reset_less=True)
            registered_product(m, platform, self.i.payload.a[j], self.mult_a, pa, en=advance,
                               name=f"pa_{j}")
            registered_product(m, platform, self.i.payload.b[j], self.mult_b, pb, en=advance,
                               name=f"pb_{j}")
            with m.If(advance):
                m.d.sync += total.eq(pa + pb)
                shifted = rounding_shift(m, total, half, self.shift[3:], self.shift[:3],
                                         width=sw, name=f"lane{j}")
                m.d.sync += out.payload[j].eq(saturate(shifted, cfg.out_width))
        return m
