"""INT32 -> INT8 requantizer: dyadic multiply, round-half-up shift, saturate."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from .dsp import is_ice40, registered_product, shared_product
from .fanout import register_copies
from .skid import SkidBuffer
from .stream import delay

__all__ = ["saturate", "rounding_half", "rounding_shift", "lane_beat_layout", "Requantizer"]


def saturate(value, width):
    """Clamp a signed value to the signed ``width``-bit range: a signed value of at most
    ``width`` bits (the value itself when it has no more). The value fits when its bits from
    ``width - 1`` up are all equal (all copies of the sign); otherwise the result is the limit
    of its sign. Two reductions of those bits, not two comparisons with carry chains as wide
    as the value. An unsigned value is read as the signed one a bit wider."""
    value = Value.cast(value)
    value = value if value.shape().signed else Cat(value, Const(0, 1)).as_signed()
    if len(value) <= width:
        return value
    top, sign = value[width - 1:], value[-1]
    fits = top.all() | ~top.any()
    return Mux(fits, value[:width], Cat((~sign).replicate(width - 1), sign)).as_signed()


def rounding_half(shift, width):
    """The rounding constant of :func:`rounding_shift` for an unsigned ``shift``: ``2**(s-1)``
    as ``width`` bits, 0 for ``s = 0`` and for ``s > width`` (the value of
    ``(1 << s) >> 1`` truncated to ``width`` bits). Made by shifting the top bit right, so that
    nothing wider than ``width`` is built (``1 << s`` would be ``2**len(s) - 1`` bits wider,
    each bit of it computed on every cycle in a Verilated model)."""
    amount = Mux(shift > width, width, (width - shift)[:bits_for(width)])
    return Const(1 << (width - 1), width) >> amount


def rounding_shift(m, value, half, shift_hi, shift_lo, *, width, name):
    """intformer's one rounding rule in gateware, the twin of :func:`sim.golden.round_shift`:
    ``(value + 2**(s-1)) >> s``, arithmetic, exact for ``s = 0``, in three registered stages
    added to ``m.d.sync`` (under the caller's ``m.If``, a pipeline's advance): the rounding
    constant added, the shift by the multiple of 8, the shift by the rest.

    ``half`` (``2**(s-1)``, or 0 for ``s = 0``) is valid with ``value``; ``shift_hi``
    (``s >> 3``) with the first stage's register, ``shift_lo`` (``s & 7``) with the second's.
    Returns the third stage's register, signed ``width`` bits (wide enough for the sum).

    Latency: 3 cycles. Throughput: one value per cycle.
    """
    rounded = Signal(signed(width), name=f"{name}_rounded", reset_less=True)
    coarse = Signal(signed(width), name=f"{name}_coarse", reset_less=True)
    shifted = Signal(signed(width), name=f"{name}_shifted", reset_less=True)
    m.d.sync += [
        rounded.eq(value + half),
        coarse.eq(rounded >> Cat(Const(0, 3), shift_hi)),
        shifted.eq(coarse >> shift_lo),
    ]
    return shifted


def lane_beat_layout(lanes, acc_width, mult_width):
    """The beat of a per-lane :class:`Requantizer`: each lane's accumulator with its own
    multiplier and shift."""
    return data.StructLayout({
        "acc": data.ArrayLayout(signed(acc_width), lanes),
        "multiplier": data.ArrayLayout(unsigned(mult_width), lanes),
        "shift": data.ArrayLayout(range(acc_width + mult_width), lanes),
    })


class Requantizer(wiring.Component):
    """Requantizes lanes of accumulators: ``clamp((acc*m + 2**(s-1)) >> s, -128, 127)``.

    Parameters
    ----------
    lanes : int
        Elements per beat.
    acc_width : int
        Signed input width.
    cfg : RequantConfig
        Multiplier width, output width and ``serial``.
    per_lane : bool
        Whether each beat carries each lane's own ``m`` and ``s`` (``RUN LINEAR``'s
        per-channel requantization), rather than one pair on constant ports for all. Not with
        ``cfg.serial``.

    Members
    -------
    i : In(stream.Signature(ArrayLayout(signed(acc_width), lanes)))
        With ``per_lane``, ``In(stream.Signature(lane_beat_layout(lanes, acc_width,
        mult_width)))``: the accumulators, multipliers and shifts of a beat.
    o : Out(stream.Signature(ArrayLayout(signed(out_width), lanes)))
    multiplier : In(unsigned(mult_width)), without ``per_lane`` only
        ``m``; held constant while data flows.
    shift : In(range(acc_width + mult_width)), without ``per_lane`` only
        ``s``; held constant while data flows.

    Latency: 7 cycles (two partial products of the accumulator's low 16 bits and its high
    bits, their sum, the rounding constant added, the shift by a multiple of 8, the shift by the
    rest, the saturation, each registered; one DSP multiply per partial product, no adder behind
    a DSP in the same cycle), then a skid buffer on ``o``, so that ``i.ready`` comes from
    flip-flops rather than from ``o.ready``.
    Throughput: one beat per cycle; a stalled output stalls the pipeline. With ``per_lane``,
    each lane's shift travels beside its value (and the rounding constant is made from it in
    the second stage), at the same latency.

    With ``cfg.serial`` the lanes go one after another through one lane of the pipeline, whose
    two partial products (the accumulator's low 15 bits and the rest) take one multiplier on two
    cycles (:func:`hw.dsp.shared_product`); each output lane is written as its element comes out,
    and the beat is valid with its last lane. Latency: 7 cycles, as above, from the transfer,
    which comes ``2 * lanes - 1`` cycles after the beat is offered (at its last lane's second
    cycle). Throughput: one beat every ``2 * lanes`` cycles.

    With ``cfg.half_rate`` each lane keeps its pipeline lane, but its two partial products (the
    accumulator's low 17 bits and the rest; 15 on iCE40) take its one multiplier on two cycles,
    as in ``serial``: ``lanes`` DSP blocks instead of ``2 * lanes``. Latency: 7 cycles from the
    transfer, which comes a cycle after the beat is offered. Throughput: one beat every 2 cycles.
    """

    def __init__(self, lanes, acc_width, cfg, *, per_lane=False):
        if per_lane and cfg.serial:
            raise ValueError("Requantizer serial mode has one multiplier for all lanes; it "
                             "cannot take per-lane multipliers")
        self.lanes, self.acc_width, self.per_lane = lanes, acc_width, per_lane
        self.mult_width, self.out_width = cfg.mult_width, cfg.out_width
        self.serial, self.half_rate = cfg.serial, cfg.half_rate
        self.prod_width = acc_width + cfg.mult_width + 1
        #: Cycles from an input transfer to its output being valid.
        self.latency = 7
        if per_lane:
            ports = {"i": In(stream.Signature(lane_beat_layout(lanes, acc_width,
                                                                 cfg.mult_width)))}
        else:
            ports = {
                "i": In(stream.Signature(data.ArrayLayout(signed(acc_width), lanes))),
                "multiplier": In(unsigned(cfg.mult_width)),
                "shift": In(range(acc_width + cfg.mult_width)),
            }
        ports["o"] = Out(stream.Signature(data.ArrayLayout(signed(cfg.out_width), lanes)))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        n, pw = self.lanes, self.prod_width
        k = 1 if self.serial else n      # lanes of pipeline

        # A six-stage pipeline into a skid buffer; every stage advances when the last one is
        # empty or the skid buffer takes its beat.
        m.submodules.skid = skid = SkidBuffer(self.o.payload.shape())
        wiring.connect(m, skid.o, wiring.flipped(self.o))
        out = skid.i
        advance = Signal()
        m.d.comb += advance.eq(~out.valid | out.ready)
        valid = [Signal(name=f"valid_{s}") for s in range(self.latency - 2)]

        # The rounding shift (rounding_shift): without per_lane, the rounding constant depends
        # only on the shift register, so it is computed once and registered.
        accs, mults, halves, shift_his, shift_los = self._lane_constants(m, advance)

        # acc * m = (acc_hi * m << 16) + acc_lo * m, acc_lo the low 16 bits (unsigned), acc_hi
        # the rest (signed): each partial product fits one DSP multiplier. Where one multiplier
        # takes both parts (serial, half_rate), the low part is one bit narrower than the
        # multiplier's signed operand, so that either part fits it: 15 bits on the 16 x 16
        # SB_MAC16, 17 on the 18 x 18 MULT18X18D.
        shared = self.serial or self.half_rate
        lo_w = min((15 if self.serial or is_ice40(platform) else 17) if shared else 16,
                   self.acc_width - 1)
        hi_w = self.acc_width - lo_w
        mw = self.mult_width
        # The pipeline registers after the valid flags are reset-less: a value is only used
        # where its valid flag says so, and no reset then reaches them through a shared LUT.
        p_lo = [Signal(unsigned(lo_w + mw), name=f"p_lo_{j}", reset_less=True) for j in range(k)]
        p_hi = [Signal(signed(max(lo_w + 1, hi_w) + mw if shared else hi_w + mw + 1),
                       name=f"p_hi_{j}", reset_less=True) for j in range(k)]
        prod = Signal(data.ArrayLayout(signed(pw), k), reset_less=True)
        if shared:
            # An element takes two cycles (`second` low, then high) and enters the pipeline on
            # the second. Serial: lane `lane`'s element, the beat taken after its last lane's
            # second cycle; half_rate: every lane's at once, the beat taken on its second cycle.
            second = Signal()
            entered = self.i.valid & second
            if self.serial:
                lane = Signal(range(n))
                last = lane == n - 1
                pairs = [(self.i.payload[lane] if n > 1 else self.i.payload[0], mults[0])]
            else:
                last = 1
                pairs = list(zip(accs, mults, strict=True))
            m.d.comb += self.i.ready.eq(advance & second & last)
            second_next = Mux(advance & self.i.valid, ~second, second)
            m.d.sync += second.eq(second_next)
            if self.serial:
                with m.If(advance & self.i.valid & second):
                    m.d.sync += lane.eq(Mux(lane == n - 1, 0, lane + 1))
            # Each multiplier's operand select reads its own copy of `second`, placed beside
            # its DSP block: one net to every lane's select spans the die's rows of DSP sites.
            selects = register_copies(m, platform, second_next, len(pairs), name="second")
            for j, (acc, mult) in enumerate(pairs):
                shared_product(m, platform, acc[:lo_w], acc[lo_w:].as_signed(), mult,
                               p_hi[j], p_lo[j], second=selects[j], en=advance,
                               name=f"p_{j}")
        else:
            entered = self.i.valid
            m.d.comb += self.i.ready.eq(advance)
            for j in range(n):
                acc = accs[j]
                # Each partial product registered in its DSP block (see hw.dsp).
                registered_product(m, platform, acc[:lo_w], mults[j], p_lo[j], en=advance,
                                   name=f"p_lo_{j}")
                registered_product(m, platform, acc[lo_w:].as_signed(), mults[j], p_hi[j],
                                   en=advance, name=f"p_hi_{j}")
        with m.If(advance):
            m.d.sync += [a.eq(b) for a, b in zip([*valid, out.valid], [entered, *valid],
                                                  strict=True)]
            shifted = []
            for j in range(k):
                m.d.sync += prod[j].eq((p_hi[j] << lo_w) + p_lo[j])
                shifted.append(rounding_shift(m, prod[j], halves[j], shift_his[j],
                                              shift_los[j], width=pw, name=f"lane{j}"))
            if self.serial:
                # Each element into its lane of the output beat, which is valid with the last
                # (this out.valid overrides the valid chain's last step above).
                out_lane = delay(m, lane, self.latency - 2, name="lane", reset_less=True)
                m.d.sync += out.valid.eq(valid[-1] & (out_lane == n - 1))
                with m.Switch(out_lane):
                    for j in range(n):
                        with m.Case(j):
                            m.d.sync += out.payload[j].eq(saturate(shifted[0], self.out_width))
            else:
                for j in range(n):
                    m.d.sync += out.payload[j].eq(saturate(shifted[j], self.out_width))
        return m

    def _lane_constants(self, m, advance):
        """Each lane's accumulator and multiplier (at the input), rounding constant (with
        ``prod``), and the shift's high and low parts (for the second and third stages of
        :func:`rounding_shift`)."""
        n, pw = self.lanes, self.prod_width
        if not self.per_lane:
            half = Signal(unsigned(pw))
            m.d.sync += half.eq(rounding_half(self.shift, pw))
            return ([self.i.payload[j] for j in range(n)], [self.multiplier] * n, [half] * n,
                    [self.shift[3:]] * n, [self.shift[:3]] * n)
        beat = self.i.payload
        sw = len(beat.shift[0])
        halves, his, los = [], [], []
        for j in range(n):
            # The shift beside the partial products (s1), beside prod (s2, with the rounding
            # constant made from s1), beside the rounded sum (s3) and the coarse shift (s4).
            s1, s2, s3, s4 = (Signal(sw, name=f"shift_{k}_{j}", reset_less=True)
                              for k in (1, 2, 3, 4))
            half = Signal(unsigned(pw), name=f"half_{j}", reset_less=True)
            with m.If(advance):
                m.d.sync += [s1.eq(beat.shift[j]), s2.eq(s1), s3.eq(s2), s4.eq(s3),
                             half.eq(rounding_half(s1, pw))]
            halves.append(half)
            his.append(s3[3:])
            los.append(s4[:3])
        return ([beat.acc[j] for j in range(n)], [beat.multiplier[j] for j in range(n)],
                halves, his, los)
