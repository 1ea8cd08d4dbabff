"""Integer-only softmax over streamed rows (I-BERT i-exp or I-ViT Shiftmax), in three passes."""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .config import SoftmaxConfig

__all__ = ["Softmax"]


def _delay(m, value, cycles, name):
    """``value`` delayed by ``cycles`` registers."""
    for i in range(cycles):
        reg = Signal.like(value, name=f"{name}_d{i}")
        m.d.sync += reg.eq(value)
        value = reg
    return value


class Softmax(wiring.Component):
    """Softmax of rows of wide signed scores, ``lanes`` elements per beat, bit-exact with
    :func:`sim.golden.softmax`.

    A row of ``length`` elements arrives as ``ceil(length/lanes)`` beats on ``i`` (the lanes
    past the end of the last beat are ignored) and leaves as as many beats on ``o`` (lanes past
    the end are 0). Rows go through three passes, each over a double or triple buffer, so three
    consecutive rows are in flight at once:

    1. **load**: beats are written to a row buffer (two banks, :class:`~amaranth.lib.memory.Memory`
       of ``2*ceil(max_len/lanes)`` beats) while the row max is tracked.
    2. **exp**: the buffer is read back one beat per cycle through a 13-stage pipeline that
       computes ``e`` (below); ``e`` goes to a second buffer (three banks) and into the row sum.
       The pipeline carries rows back to back. A shift-subtract divider then forms the row's
       normalizer ``f = 2**K // sum(e)`` in ``out_width + 7`` cycles while the next row streams.
    3. **normalize**: ``e`` is read back, multiplied by ``f``, rounded and saturated, and sent.

    The integer algorithm, per element (``x`` is the distance from the row max, all constants
    come from :func:`sim.golden.softmax_constants`, which documents their ranges)::

        x' = min(((x + 2**(sr-1)) >> sr) << sl, 2**19 - 1)
        y  = min(x' (ibert) | x' + (x'>>1) - (x'>>4) (shift), 30*D)   # 30*D = (D<<5) - (D<<1)
        z, r = divmod(y, D)                                           # 5 compare-subtract stages
        e  = ((B - r)**2 + C (ibert) | B - r (shift)) >> (z + se)     # 16 bits
        p  = min((e*f + 2**(K-out_width-1)) >> (K-out_width), 2**out_width - 1)

    with ``K = out_width + 20``. Multipliers: the square ``(B - r)**2`` (15 x 15 bits, "ibert"
    only) and the normalization ``e*f`` (16 x ``out_width + 7`` bits), one each per lane: that is
    ``2*lanes`` general multipliers for "ibert" and ``lanes`` for "shift". Every other constant
    product is a shift and an add; the per-row division is iterative.

    Parameters
    ----------
    cfg : SoftmaxConfig
        ``lanes``, ``max_len``, ``in_width``, ``out_width`` and ``variant``.

    Members
    -------
    i : In(stream.Signature(ArrayLayout(signed(in_width), lanes)))
        Scores, row after row.
    o : Out(stream.Signature(ArrayLayout(unsigned(out_width), lanes)))
        Probabilities with scale ``2**-out_width``; 1.0 saturates to ``2**out_width - 1``.
    length : In(range(max_len + 1))
        Row length, 1 to ``max_len``. Held constant while rows are in flight.
    shift_right, shift_left, divisor, offset, poly_c, exp_shift : In(unsigned(...))
        The fields of :class:`sim.golden.SoftmaxConstants` (``sr``, ``sl``, ``D``, ``B``, ``C``,
        ``se`` above), widths from ``cfg.constant_widths``. Held constant while rows are in
        flight; they are the only place the input scale enters the hardware.

    Latency: with ``N = ceil(length/lanes)`` beats and nothing stalled, a lone row takes
    ``3N + out_width + 27`` cycles from its first input transfer to its last output transfer:
    load ``N``; exp ``N`` plus 12 pipeline stages, a hand-off and ``out_width + 7`` division
    steps; normalize ``N`` plus 3 pipeline stages (measured: 131 cycles at ``N = 32``,
    ``out_width = 8``).
    Throughput: in steady state a row takes ``max(N, (N + out_width + 23)/2)`` cycles, so rows of
    ``N >= out_width + 23`` beats (31 for 8-bit outputs) stream at one beat per cycle; shorter
    rows wait for the divider, since at most two rows may be between the start of their exp
    pass and the end of their division.
    """

    #: Cycles of the exp pipeline from the buffer read (stage 0) to ``e`` (stage 12).
    EXP_STAGES = 12

    def __init__(self, cfg):
        if not isinstance(cfg, SoftmaxConfig):
            raise TypeError(f"Softmax config must be a SoftmaxConfig, not {cfg!r}")
        self.cfg = cfg
        self.lanes = cfg.lanes
        #: Beats per buffer bank.
        self.depth = -(-cfg.max_len // cfg.lanes)
        self.recip_bits = cfg.recip_bits
        #: Width of the per-row normalizer ``f``.
        self.f_width = cfg.out_width + 7
        #: Width of the row sum of ``e``.
        self.sum_width = (cfg.max_len << cfg.EXP_WIDTH).bit_length()
        ports = {
            "i": In(stream.Signature(data.ArrayLayout(signed(cfg.in_width), cfg.lanes))),
            "o": Out(stream.Signature(data.ArrayLayout(unsigned(cfg.out_width), cfg.lanes))),
            "length": In(range(cfg.max_len + 1)),
        }
        for name, width in cfg.constant_widths.items():
            ports[name] = In(unsigned(width))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        cfg, n, depth = self.cfg, self.lanes, self.depth
        w, ew = cfg.in_width, cfg.EXP_WIDTH
        elem_shape = range(cfg.max_len + n + 1)
        length = self.length

        def base(bank, banks):
            """First beat address of a bank."""
            return Array([Const(k * depth, range(banks * depth)) for k in range(banks)])[bank]

        def next3(bank):
            return Mux(bank == 2, 0, bank + 1)

        m.submodules.qmem = qmem = Memory(
            shape=data.ArrayLayout(signed(w), n), depth=2 * depth, init=[])
        m.submodules.emem = emem = Memory(
            shape=data.ArrayLayout(unsigned(ew), n), depth=3 * depth, init=[])
        q_wr = qmem.write_port()
        q_rd = qmem.read_port()
        e_wr = emem.write_port()
        e_rd = emem.read_port()

        # Row hand-off flags. A score bank is full from the end of its load to the last read of
        # its exp pass. An exp bank is busy from the start of its exp pass to the end of the
        # division, and full from then to the last read of its normalize pass.
        q_full = Signal(2)
        q_max = Array(Signal(signed(w), name=f"q_max{k}") for k in range(2))
        e_busy = Signal(3)
        e_full = Signal(3)
        f_reg = Array(Signal(self.f_width, name=f"f{k}") for k in range(3))
        q_set, q_clr = Signal(2), Signal(2)
        eb_set, eb_clr = Signal(3), Signal(3)
        ef_set, ef_clr = Signal(3), Signal(3)
        # A set wins over a clear of the same bank in the same cycle: the clear belongs to the
        # row leaving the bank, the set to the row entering it (a row of one beat can be loaded
        # into a score bank on the very cycle the exp pass reads the previous one out).
        m.d.sync += [
            q_full.eq((q_full & ~q_clr) | q_set),
            e_busy.eq((e_busy & ~eb_clr) | eb_set),
            e_full.eq((e_full & ~ef_clr) | ef_set),
        ]

        # -- Pass 1, load: write beats to the score buffer and track the row max. -------------
        b_bank = Signal()                      # the score bank the exp pass reads (pass 2)
        a_bank = Signal()
        a_beat = Signal(range(depth))
        a_elem = Signal(elem_shape)            # elements of the row before this beat
        most_negative = -(1 << (w - 1))
        a_max = Signal(signed(w), init=most_negative)
        # A bank may be refilled from the cycle the exp pass issues its last read (`b_fin`): the
        # read port is not transparent, so that read still returns the old beat.
        b_fin = Signal()
        m.d.comb += self.i.ready.eq(~q_full.bit_select(a_bank, 1) | (b_fin & (b_bank == a_bank)))
        beat_max = a_max
        for j in range(n):
            lane = self.i.payload[j]
            beat_max = Mux((a_elem + j < length) & (lane > beat_max), lane, beat_max)
        a_last = a_elem + n >= length
        m.d.comb += [
            q_wr.addr.eq(base(a_bank, 2) + a_beat),
            q_wr.data.eq(self.i.payload),
            q_wr.en.eq(self.i.valid & self.i.ready),
        ]
        with m.If(self.i.valid & self.i.ready):
            with m.If(a_last):
                m.d.comb += q_set.eq(1 << a_bank)
                m.d.sync += [
                    q_max[a_bank].eq(beat_max),
                    a_bank.eq(~a_bank), a_beat.eq(0), a_elem.eq(0), a_max.eq(most_negative),
                ]
            with m.Else():
                m.d.sync += [a_beat.eq(a_beat + 1), a_elem.eq(a_elem + n), a_max.eq(beat_max)]

        # -- Pass 2, exp: issue reads, one beat per cycle, rows back to back. -----------------
        b_active = Signal()
        b_ebank = Signal(range(3))
        b_beat = Signal(range(depth))
        b_elem = Signal(elem_shape)
        b_max = Signal(signed(w))
        inflight = Signal(range(3))     # rows whose exp pass started and division did not end
        b_last = b_elem + n >= length
        m.d.comb += b_fin.eq(b_active & b_last)
        b_cand = Mux(b_fin, ~b_bank, b_bank)
        b_ecand = Mux(b_fin, next3(b_ebank), b_ebank)
        b_start = Signal()
        m.d.comb += b_start.eq(
            (~b_active | b_fin) & q_full.bit_select(b_cand, 1)
            & ~e_busy.bit_select(b_ecand, 1) & ~e_full.bit_select(b_ecand, 1)
            & (inflight < 2))
        m.d.comb += q_rd.addr.eq(base(b_bank, 2) + b_beat)
        with m.If(b_fin):
            m.d.comb += q_clr.eq(1 << b_bank)
            m.d.sync += [b_active.eq(0), b_bank.eq(~b_bank), b_ebank.eq(next3(b_ebank))]
        with m.Elif(b_active):
            m.d.sync += [b_beat.eq(b_beat + 1), b_elem.eq(b_elem + n)]
        with m.If(b_start):
            m.d.comb += eb_set.eq(1 << b_ecand)
            m.d.sync += [
                b_active.eq(1), b_bank.eq(b_cand), b_ebank.eq(b_ecand),
                b_beat.eq(0), b_elem.eq(0), b_max.eq(q_max[b_cand]),
            ]

        # Stage 0: registered alongside the buffer read.
        v0 = Signal()
        last0 = Signal()
        elem0 = Signal(elem_shape)
        ebank0 = Signal(range(3))
        beat0 = Signal(range(depth))
        max0 = Signal(signed(w))
        m.d.sync += [
            v0.eq(b_active), last0.eq(b_last), elem0.eq(b_elem), ebank0.eq(b_ebank),
            beat0.eq(b_beat), max0.eq(b_max),
        ]
        mask0 = Signal(n)
        m.d.comb += mask0.eq(Cat(elem0 + j < length for j in range(n)))

        # Constants formed once from the ports.
        D = self.divisor
        clamp = Signal(cfg.X_WIDTH)
        m.d.comb += clamp.eq((D << 5) - (D << 1))
        half = Signal(w + 1)
        m.d.comb += half.eq((Const(1, w + 2) << self.shift_right) >> 1)
        x_top = (1 << cfg.X_WIDTH) - 1

        e_lanes = []
        for j in range(n):
            # Stage 1: distance from the row max, 0 <= x < 2**w for lanes in the row.
            x1 = Signal(w, name=f"x1_{j}")
            m.d.sync += x1.eq(max0 - q_rd.data[j])
            # Stage 2: rescale to units of S' (round-half-up right shift or left shift), saturate.
            x2 = Signal(cfg.X_WIDTH, name=f"x2_{j}")
            rs = (x1 + half) >> self.shift_right
            ls = rs << self.shift_left
            m.d.sync += x2.eq(Mux(ls > x_top, x_top, ls))
            # Stage 3: times log2(e) by shifts (Shiftmax), clamp at 30 reductions.
            y = x2 + (x2 >> 1) - (x2 >> 4) if cfg.variant == "shift" else x2
            rem = Signal(cfg.X_WIDTH, name=f"y3_{j}")
            m.d.sync += rem.eq(Mux(y > clamp, clamp, y))
            # Stages 4-8: z, r = divmod(y, D) by restoring division, 5 quotient bits.
            z = Signal(5, name=f"z3_{j}")
            for k in reversed(range(5)):
                dk = D << k
                nrem = Signal(cfg.X_WIDTH, name=f"r{8 - k}_{j}")
                nz = Signal(5, name=f"z{8 - k}_{j}")
                take = rem >= dk
                m.d.sync += [
                    nrem.eq(Mux(take, rem - dk, rem)),
                    nz.eq(z | Mux(take, 1 << k, 0)),
                ]
                rem, z = nrem, nz
            # Stage 9: t = B - r, in (B - D, B].
            t = Signal(16, name=f"t9_{j}")
            m.d.sync += t.eq(self.offset - rem)
            z = _delay(m, z, 1, f"z9_{j}")
            # Stage 10: the square ("ibert" only).
            sq = Signal(2 * 16 if cfg.variant == "ibert" else 16, name=f"sq10_{j}")
            m.d.sync += sq.eq(t * t if cfg.variant == "ibert" else t)
            # Stage 11: + C, and the total shift z + se.
            v = Signal(len(sq) + 1, name=f"v11_{j}")
            sh = Signal(range(31 + 16), name=f"sh11_{j}")
            m.d.sync += [
                v.eq(sq + self.poly_c if cfg.variant == "ibert" else sq),
                sh.eq(_delay(m, z, 1, f"z10_{j}") + self.exp_shift),
            ]
            # Stage 12: e = v >> (z + se); 0 for lanes past the end of the row.
            e = Signal(ew, name=f"e12_{j}")
            mask = _delay(m, mask0[j], self.EXP_STAGES - 1, f"mask_{j}")  # at stage 11
            m.d.sync += e.eq(Mux(mask, v >> sh, 0))
            e_lanes.append(e)

        v12 = _delay(m, v0, self.EXP_STAGES, "v")
        last12 = _delay(m, last0, self.EXP_STAGES, "last")
        ebank12 = _delay(m, ebank0, self.EXP_STAGES, "ebank")
        beat12 = _delay(m, beat0, self.EXP_STAGES, "beat")
        m.d.comb += [
            e_wr.addr.eq(base(ebank12, 3) + beat12),
            e_wr.data.eq(Cat(*e_lanes)),
            e_wr.en.eq(v12),
        ]

        # Row sum, handed to the divider through a one-row slot at the end of the row.
        row_sum = Signal(self.sum_width)
        total = row_sum
        for e in e_lanes:
            total = total + e
        pend_valid = Signal()
        pend_sum = Signal(self.sum_width)
        pend_ebank = Signal(range(3))

        # Divider: f = 2**K // sum by restoring division. sum >= 2**14, so f < 2**(K-13) and
        # the remainder may start at 2**(K - f_width) = 2**13 < sum.
        div_busy = Signal()
        div_count = Signal(range(self.f_width + 1))
        div_rem = Signal(self.sum_width + 1)
        div_d = Signal(self.sum_width)
        div_q = Signal(self.f_width)
        div_ebank = Signal(range(3))
        div_fin = Signal()
        m.d.comb += div_fin.eq(div_busy & (div_count == 0))
        with m.If(~div_busy & pend_valid):
            m.d.sync += [
                div_busy.eq(1), div_count.eq(self.f_width),
                div_rem.eq(1 << (self.recip_bits - self.f_width)), div_q.eq(0),
                div_d.eq(pend_sum), div_ebank.eq(pend_ebank), pend_valid.eq(0),
            ]
        with m.If(div_busy & (div_count != 0)):
            r2 = Cat(Const(0, 1), div_rem)
            take = r2 >= div_d
            m.d.sync += [
                div_rem.eq(Mux(take, r2 - div_d, r2)),
                div_q.eq(Cat(take, div_q)),
                div_count.eq(div_count - 1),
            ]
        with m.If(div_fin):
            m.d.sync += [div_busy.eq(0), f_reg[div_ebank].eq(div_q)]
            m.d.comb += [eb_clr.eq(1 << div_ebank), ef_set.eq(1 << div_ebank)]
        m.d.sync += inflight.eq(inflight + b_start - div_fin)
        # A row ending while the divider takes the previous one from the slot refills the slot
        # (these statements come after the divider's, so they win). The slot never holds a row
        # when another ends: at most two rows are between exp start and division end.
        with m.If(v12):
            with m.If(last12):
                m.d.sync += [row_sum.eq(0), pend_valid.eq(1), pend_sum.eq(total),
                             pend_ebank.eq(ebank12)]
            with m.Else():
                m.d.sync += row_sum.eq(total)

        # -- Pass 3, normalize: read e, multiply by f, round, saturate; stalls with `o`. ------
        advance = Signal()
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)
        c_active = Signal()
        c_bank = Signal(range(3))
        c_beat = Signal(range(depth))
        c_elem = Signal(elem_shape)
        c_last = c_elem + n >= length
        c_issue = Signal()
        m.d.comb += c_issue.eq(c_active & advance)
        c_fin = c_issue & c_last
        c_cand = Mux(c_fin, next3(c_bank), c_bank)
        c_start = (~c_active | c_fin) & e_full.bit_select(c_cand, 1)
        m.d.comb += [e_rd.addr.eq(base(c_bank, 3) + c_beat), e_rd.en.eq(advance)]
        with m.If(c_fin):
            m.d.comb += ef_clr.eq(1 << c_bank)
            m.d.sync += [c_active.eq(0), c_bank.eq(next3(c_bank))]
        with m.Elif(c_issue):
            m.d.sync += [c_beat.eq(c_beat + 1), c_elem.eq(c_elem + n)]
        with m.If(c_start):
            m.d.sync += [c_active.eq(1), c_bank.eq(c_cand), c_beat.eq(0), c_elem.eq(0)]

        cv1, cv2 = Signal(), Signal()
        cmask1, cmask2 = Signal(n), Signal(n)
        cf1 = Signal(self.f_width)
        prod_width = ew + self.f_width
        prods = [Signal(prod_width, name=f"prod_{j}") for j in range(n)]
        drop = self.recip_bits - cfg.out_width
        top = (1 << cfg.out_width) - 1
        with m.If(advance):
            m.d.sync += [
                cv1.eq(c_issue), cf1.eq(f_reg[c_bank]),
                cmask1.eq(Cat(c_elem + j < length for j in range(n))),
                cv2.eq(cv1), cmask2.eq(cmask1),
                self.o.valid.eq(cv2),
            ]
            for j in range(n):
                rounded = (prods[j] + (1 << (drop - 1))) >> drop
                m.d.sync += [
                    prods[j].eq(e_rd.data[j] * cf1),
                    self.o.payload[j].eq(Mux(cmask2[j], Mux(rounded > top, top, rounded), 0)),
                ]
        return m
