"""Integer-only GELU, elementwise and fully pipelined: I-BERT i-GELU or I-ViT ShiftGELU."""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .dsp import registered_product
from .requant import rounding_half
from .stream import delay

__all__ = ["Gelu"]


class Gelu(wiring.Component):
    """Integer GELU on ``lanes`` elements per beat; the twin of :func:`sim.golden.gelu`.

    The integer constants come from :func:`sim.golden.gelu_constants` (the one place where the
    float input scale becomes integers). They enter on input ports of the same names, which must
    be held constant while data flows; the registered rounding constant of ``"ibert"`` follows a
    change after one cycle.

    Parameters
    ----------
    cfg : GeluConfig
        Lanes, input width, variant and precision widths (``poly_width``, ``frac_width``).

    Members
    -------
    i : In(stream.Signature(ArrayLayout(signed(in_width), lanes)))
        Input beats, ``q``.
    o : Out(stream.Signature(ArrayLayout(signed(out_width), lanes)))
        Output beats, ``y``; real value ``y * y_scale``.
    k : In(range(poly_width + 1))
        ``"ibert"``: pre-shift of ``|q|``.
    beta : In(unsigned(poly_width))
        ``"ibert"``: clip point ``-b`` in steps of the erf resolution.
    c : In(unsigned(2 * poly_width + 1))
        ``"ibert"``: the polynomial's 1.
    n : In(range(2 * poly_width + 2))
        ``"ibert"``: overflow shift (round half up).
    one : In(unsigned(frac_width + 1))
        ``"ibert"``: ``round_shift(c, n)``, the erf value 1.
    x0 : In(unsigned(exp_width))
        ``"shift"``: steps of ``u`` per unit of the base-2 exponent.
    zs : In(range(frac_width + 3))
        ``"shift"``: left shift of the exponential's mantissa.
    d : In(unsigned(den_width - 1))
        ``"shift"``: ``x0 << zs``, the value 1 of the exponential.
    umax : In(unsigned(exp_width))
        ``"shift"``: clamp of the exponent.

    Algorithm
    ---------
    ``"ibert"`` (6 stages)::

        a = |q|                                       # its own stage: a carry chain
        t = beta - min(a << k, beta)                  # shift, then compare and subtract
        sq = t * t                                    # multiplier 1: poly_width x poly_width
        e = (c - sq + 2**(n-1)) >> n                  # round half up, as everywhere
        s = one - e if q < 0 else one + e
        y = q * s                                     # multiplier 2: in_width x (frac_width+2)

    ``"shift"`` (``7 + quot_width + frac_width`` stages)::

        a = |q|                                       # its own stage: a carry chain
        u = min(621 * a, umax)                        # 27 = 16+8+2+1, then 23 = 16+8-1: adds
        z, r = divmod(u, x0)                          # quot_width shift-subtract stages
        eps = ((x0 - (r >> 1)) << zs) >> z            # two barrel shifters
        num, den = (eps if q < 0 else d), d + eps
        s = floor(num * 2**frac_width / den)          # frac_width shift-subtract stages
                                                      # (2**frac_width when eps = 0, q >= 0)
        y = q * s                                     # multiplier 1: in_width x (frac_width+1)

    General multipliers per lane: 2 for ``"ibert"`` (the square and the final product), 1 for
    ``"shift"`` (the final product). Every other product by a constant is shifts and adds.

    Latency: 8 cycles (``"ibert"``) or ``7 + quot_width + frac_width`` cycles (``"shift"``;
    26 with the defaults), from an input transfer to the output being valid. The first stage only
    takes ``|q|`` (timing: the path from the producer's output register then ends after one
    carry chain, before the shift).
    Throughput: one beat (``lanes`` elements) per cycle; a stalled output stalls the pipeline.
    """

    def __init__(self, cfg):
        from .config import GeluConfig

        if not isinstance(cfg, GeluConfig):
            raise TypeError(f"GELU config must be a GeluConfig, not {cfg!r}")
        self.cfg = cfg
        P, F = cfg.poly_width, cfg.frac_width
        if cfg.variant == "ibert":
            constants = {
                "k": In(range(P + 1)),
                "beta": In(unsigned(P)),
                "c": In(unsigned(2 * P + 1)),
                "n": In(range(2 * P + 2)),
                "one": In(unsigned(F + 1)),
            }
            self.latency = 8
        else:
            constants = {
                "x0": In(unsigned(cfg.exp_width)),
                "zs": In(range(F + 3)),
                "d": In(unsigned(cfg.den_width - 1)),
                "umax": In(unsigned(cfg.exp_width)),
            }
            self.latency = 7 + cfg.quot_width + F
        #: Names of the constant ports, as the fields of the golden constants.
        self.constant_names = tuple(constants)
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(signed(cfg.in_width), cfg.lanes))),
            "o": Out(stream.Signature(data.ArrayLayout(signed(cfg.out_width), cfg.lanes))),
            **constants,
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg

        # Every stage advances when the output is free or taken.
        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance)]
        valid = [Signal(name=f"valid_{s}") for s in range(self.latency - 1)]
        with m.If(advance):
            m.d.sync += [a.eq(b) for a, b in zip([*valid, self.o.valid],
                                                  [self.i.valid, *valid], strict=True)]

        if cfg.variant == "ibert":
            # The rounding constant 2**(n-1) depends only on a port: computed once, registered.
            half = Signal(unsigned(2 * cfg.poly_width + 1))
            m.d.sync += half.eq(rounding_half(self.n, len(half)))
        for lane in range(cfg.lanes):
            q = self.i.payload[lane]
            # The last stage, y = q * s, is registered in its DSP block (see hw.dsp).
            y = Signal(signed(cfg.out_width), name=f"y_{lane}")
            with m.If(advance):
                if cfg.variant == "ibert":
                    q_s, s = self._ibert(m, platform, advance, q, half, lane)
                else:
                    q_s, s = self._shift(m, q, lane)
            registered_product(m, platform, q_s, s, y, en=advance, name=f"y_{lane}")
            m.d.comb += self.o.payload[lane].eq(y)
        return m

    @staticmethod
    def _reg(m, value, shape, name):
        """A pipeline register loaded with ``value`` (inside the caller's ``If(advance)``).

        Reset-less: a value is only used where its valid flag (``valid``, reset) says so.
        """
        sig = Signal(shape, name=name, reset_less=True)
        m.d.sync += sig.eq(value)
        return sig

    def _ibert(self, m, platform, advance, q, half, lane):
        cfg, reg = self.cfg, self._reg
        P, F, w = cfg.poly_width, cfg.frac_width, cfg.in_width
        # 1: |q|
        mag = reg(m, Mux(q < 0, -q, q).as_unsigned()[:w], unsigned(w), f"mag_{lane}")
        # 2: |q| << k, saturated at beta (|q| << k >= beta exactly when its bits above P are
        # set or its low P bits are >= beta)
        shifted = mag << self.k
        big = reg(m, shifted[P:] != 0, 1, f"big_{lane}")
        low = reg(m, shifted[:P], unsigned(P), f"low_{lane}")
        # 3: t = beta - min(|q| << k, beta)
        t = reg(m, self.beta - Mux(~big & (low < self.beta), low, self.beta), unsigned(P),
                f"t_{lane}")
        # 4: the square (multiplier 1), registered in its DSP block
        sq = Signal(unsigned(2 * P), name=f"sq_{lane}", reset_less=True)
        registered_product(m, platform, t, t, sq, en=advance, name=f"sq_{lane}")
        # 5: c + 2**(n-1) - t*t; c > t*t, so the difference is positive.
        diff = reg(m, self.c + half - sq, unsigned(2 * P + 2), f"diff_{lane}")
        # 6: e = round_shift(c - t*t, n)
        e = reg(m, (diff >> self.n)[:F + 1], unsigned(F + 1), f"e_{lane}")
        neg = delay(m, q < 0, 6, name=f"neg_{lane}", reset_less=True)
        # 7: s = one -+ e, in [0, 2 * one]
        s = reg(m, Mux(neg, self.one - e, self.one + e)[:F + 2], unsigned(F + 2), f"s_{lane}")
        # 8: y = q * s (multiplier 2), registered by the caller.
        return delay(m, q, 7, name=f"q_{lane}", reset_less=True), s

    def _shift(self, m, q, lane):
        cfg, reg = self.cfg, self._reg
        F, w, XW, DW, QW = cfg.frac_width, cfg.in_width, cfg.exp_width, cfg.den_width, \
            cfg.quot_width
        # 1: a = |q|
        mag = reg(m, Mux(q < 0, -q, q).as_unsigned()[:w], unsigned(w), f"mag_{lane}")
        # 2: v = 27 a = 16a + 8a + 2a + a (27 * 23 is cfg.SHIFT_MULT)
        v = reg(m, (mag << 4) + (mag << 3) + (mag << 1) + mag, unsigned(w + 5), f"v_{lane}")
        # 3: u = min(23 v, umax), 23 v = 16v + 8v - v
        v23 = (v << 4) + (v << 3) - v
        rem = reg(m, Mux(v23 < self.umax, v23, self.umax)[:XW], unsigned(XW), f"u_{lane}")
        stage = 3
        # 4 .. 3+QW: z = u // x0 by restoring division, one quotient bit per stage, MSB first.
        z_bits = []
        for b in reversed(range(QW)):
            test = self.x0 << b
            ge = rem >= test
            z_bits = [delay(m, zb, 1, name=f"zb{i}_{lane}_s{stage}", reset_less=True)
                      for i, zb in enumerate(z_bits)] + [reg(m, ge, 1, f"zb{b}_{lane}_s{stage}")]
            rem = reg(m, Mux(ge, rem - test, rem)[:XW], unsigned(XW), f"r_{lane}_s{stage}")
            stage += 1
        z = Signal(unsigned(QW), name=f"z_{lane}")
        m.d.comb += z.eq(sum(zb << (QW - 1 - i) for i, zb in enumerate(z_bits)))
        # +1: mantissa (x0 - (r >> 1)) << zs, in (x0/2, x0] << zs
        mant = reg(m, ((self.x0 - (rem >> 1)).as_unsigned()[:XW] << self.zs)[:DW - 1],
                   unsigned(DW - 1), f"mant_{lane}")
        z = delay(m, z, 1, name=f"z_{lane}", reset_less=True)
        # +2: eps = mant >> z
        eps = reg(m, mant >> z, unsigned(DW - 1), f"eps_{lane}")
        stage += 2
        neg = delay(m, q < 0, stage, name=f"neg_{lane}", reset_less=True)
        # +3: num = eps or d, den = d + eps. Only eps = 0 with q >= 0 gives num = den, a quotient
        # of exactly 2**F ("top"); the divider then runs on num = 0, so that always num < den.
        top = reg(m, (eps == 0) & ~neg, 1, f"top_{lane}")
        num = reg(m, Mux(neg | (eps == 0), eps, self.d), unsigned(DW), f"num_{lane}")
        den = reg(m, self.d + eps, unsigned(DW), f"den_{lane}")
        stage += 1
        # +4 .. +3+F: s = floor(num * 2**F / den), num < den, one quotient bit per stage.
        s_bits = [top]
        for b in range(F):
            twice = num << 1
            ge = twice >= den
            s_bits = [delay(m, sb, 1, name=f"sb{i}_{lane}_s{stage}", reset_less=True)
                      for i, sb in enumerate(s_bits)] + [reg(m, ge, 1,
                                                             f"sb{F - 1 - b}_{lane}_s{stage}")]
            num = reg(m, Mux(ge, twice - den, twice)[:DW], unsigned(DW), f"rem_{lane}_s{stage}")
            den = delay(m, den, 1, name=f"den_{lane}_s{stage}", reset_less=True)
            stage += 1
        s = Signal(unsigned(F + 1), name=f"s_{lane}")
        m.d.comb += s.eq(sum(sb << (F - i) for i, sb in enumerate(s_bits)))
        # last: y = q * s (the only multiplier), registered by the caller.
        return delay(m, q, stage, name=f"q_{lane}", reset_less=True), s
