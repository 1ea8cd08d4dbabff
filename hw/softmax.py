"""Integer-only softmax over streamed rows (I-BERT i-exp or I-ViT Shiftmax), in three passes."""

from types import SimpleNamespace

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .config import SoftmaxConfig
from .dsp import registered_product
from .skid import SkidBuffer
from .stream import Countdown, delay

__all__ = ["Softmax"]


class Softmax(wiring.Component):
    """Softmax of rows of wide signed scores, ``lanes`` elements per beat, bit-exact with
    :func:`sim.golden.softmax`.

    A row of ``length`` elements arrives as ``ceil(length/lanes)`` beats on ``i`` (the lanes
    past the end of the last beat are ignored) and leaves as as many beats on ``o`` (lanes past
    the end are 0). Rows go through three passes, each over a double or triple buffer, so three
    consecutive rows are in flight at once:

    1. **load**: beats are written to a row buffer (two banks, :class:`~amaranth.lib.memory.Memory`
       of ``2*ceil(max_len/lanes)`` beats) while the row max is tracked (a tree of comparisons
       over the lanes, then a running max; the max is stored a cycle after the last beat).
    2. **exp**: the buffer is read back one beat per cycle through a 14-stage pipeline that
       computes ``e`` (below); ``e`` goes to a second buffer (three banks) and into the row sum.
       The pipeline carries rows back to back. A radix-4 shift-subtract divider then forms the
       row's normalizer ``f = 2**K // sum(e)`` in ``G = ceil((out_width + 7)/2)`` cycles (two
       quotient bits a cycle, from trial subtractions of ``d``, ``2d`` and ``3d``) while the next
       row streams.
    3. **normalize**: ``e`` is read back, registered twice, multiplied by ``f``, rounded,
       saturated and sent (a 6-stage pipeline, counting the read, whose last stage is a
       :class:`~hw.skid.SkidBuffer` on ``o``). It advances while the slice's skid register is
       empty: a beat that meets a stalled ``o`` waits there, and the pipeline stops until ``o``
       has taken its beat, so ``o.ready`` drives only the slice.

    Every pipeline stage holds at most one carry chain or one level of shifting: block RAM
    outputs are registered before use, the rescale is one right shift of ``x << 14`` by
    ``14 + sr - sl`` (for "ibert", split into shifts by 8s and by 1s over two stages; "shift"
    needs the second stage for its product), saturation is an OR of a flag found by a
    comparison beside the subtraction before it, the clamp at ``30*D`` is a flag found beside
    the first division step, the final shift is split into shifts by 8s and by 1s, and the
    constants derived from the ports (``2**(sr-1)``, ``30*D``, shift amounts, the saturation
    threshold) are registered.

    The hand-offs between the passes are decided by counts of rows between two events (each
    buffer is a ring of banks taken and released in row order), and every start condition,
    like ``i.ready``, is a register computed a cycle ahead: a pass starts a row on an AND of a
    few registers, so no chain of conditions runs from one pass through the next.

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
        Row length, 1 to ``max_len``. Held constant while rows are in flight, and set at least
        a cycle before a row's first beat (it is compared into registers; ``i.ready`` is 0 in
        the first cycle after reset).
    shift_right, shift_left, divisor, offset, poly_c, exp_shift : In(unsigned(...))
        The fields of :class:`sim.golden.SoftmaxConstants` (``sr``, ``sl``, ``D``, ``B``, ``C``,
        ``se`` above), widths from ``cfg.constant_widths``. Held constant while rows are in
        flight (set no later than a row's first beat: they are registered once inside); they are
        the only place the input scale enters the hardware.

    Latency: with ``N = ceil(length/lanes)`` beats and nothing stalled, a lone row takes
    ``3N + G + 25`` cycles from its first input transfer to its last output transfer: load
    ``N`` plus 1 to store the max; exp ``N`` plus 1 to read, 14 pipeline stages, a hand-off,
    1 to start the divider and ``G`` division steps; normalize ``N`` plus 5 pipeline stages
    (measured: 129 cycles at ``N = 32``, ``out_width = 8``, where ``G = 8``).
    Throughput: in steady state a row takes ``N`` cycles for ``N >= G + 19`` beats (27 for
    8-bit outputs), so such rows stream at one beat per cycle; shorter rows take
    ``max(N, (N + G + 18)/2)`` cycles (up to ``N + 1/3`` just below ``G + 19``), waiting for the
    divider, since at most two rows may be between the start of their exp pass and the end of
    their division.
    Timing (ECP5 LFE5U-85F, ``lanes=1``, ``in_width=24``, ``max_len=64``): 121-123 MHz out of
    context as measured before the hand-offs were registered; the critical path is the
    block-RAM output of a buffer (5.8 ns clock-to-out) into its first register. The other
    paths are estimated at under 8 ns from the Yosys netlist, inside the whole design too.
    """

    #: Cycles of the exp pipeline from the buffer read (stage 0) to ``e`` (stage 14).
    EXP_STAGES = 14

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
        """Build the score and exp buffers, the constants registered from the ports, the registered
        row-length flags and the per-bank row max and normalizer registers, then the three passes
        (load, exp and division, normalize) by the methods below, in that order.
        """
        m = Module()
        cfg, n, depth = self.cfg, self.lanes, self.depth
        w, ew, xw = cfg.in_width, cfg.EXP_WIDTH, cfg.X_WIDTH
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

        # Constants, registered once from the ports (they are held, so this only delays them by
        # a cycle; the first use is two cycles after a row's last beat is loaded, and that of
        # the saturation threshold, which takes two registers, three).
        D = Signal.like(self.divisor, name="D")
        B = Signal.like(self.offset, name="B")
        C = Signal.like(self.poly_c, name="C")
        se = Signal.like(self.exp_shift, name="se")
        half = Signal(w, name="half")                 # 2**(sr-1), or 0 when sr = 0
        amt = Signal(range(cfg.MAX_LEFT + w + 1))     # rescale: ((x << MAX_LEFT) >> amt)
        ovf_at = Signal(range(xw + (1 << len(self.shift_right))))   # 19 + sr - sl
        ovf_t = Signal(w + 2)                         # x' saturates from x >= ovf_t
        clamp = Signal(xw)                            # 30*D = (D << 5) - (D << 1)
        sr, sl = self.shift_right, self.shift_left
        m.d.sync += [
            D.eq(self.divisor), B.eq(self.offset), C.eq(self.poly_c), se.eq(self.exp_shift),
            half.eq((Const(1, w + 2) << sr) >> 1),
            amt.eq(cfg.MAX_LEFT + sr - sl),
            # 2**(19 + sr - sl), at most 2**(w + 1), which the distance never reaches.
            ovf_at.eq(xw + sr - sl),
            ovf_t.eq(Mux(ovf_at > w, 1 << (w + 1), Const(1, w + 2) << ovf_at)),
            clamp.eq((self.divisor << 5) - (self.divisor << 1)),
        ]

        # Row hand-off. Rows go through the passes in order, and each buffer is a ring of banks
        # taken and released in that order, so a hand-off is decided by counts of rows between
        # two events rather than by per-bank flags. Every start condition is an AND of a few
        # registers, each computed a cycle ahead from the counts and the events of the cycle
        # (the `*_n` signals below are the registers' next values).
        # `length`, compared once and registered (it is set a cycle before a row's first beat).
        length_one = Signal()                  # length <= lanes: a row of one beat
        length_two = Signal()                  # length <= 2*lanes
        m.d.sync += [length_one.eq(length <= n), length_two.eq(length <= 2 * n)]
        q_max = Array(Signal(signed(w), name=f"q_max{k}") for k in range(2))
        f_reg = Array(Signal(self.f_width, name=f"f{k}") for k in range(3))

        s = SimpleNamespace()
        s.cfg, s.n, s.depth, s.w, s.ew, s.xw, s.elem_shape = cfg, n, depth, w, ew, xw, elem_shape
        s.length, s.base, s.next3, s.q_wr, s.q_rd, s.e_wr = length, base, next3, q_wr, q_rd, e_wr
        s.e_rd, s.D, s.B, s.C, s.se, s.half, s.amt, s.ovf_t = e_rd, D, B, C, se, half, amt, ovf_t
        s.clamp, s.length_one, s.length_two, s.q_max = clamp, length_one, length_two, q_max
        s.f_reg = f_reg
        self._load_pass(m, s)
        self._exp_issue(m, s)
        self._exp_pipeline(m, platform, s)
        self._divider(m, s)
        self._normalize_pass(m, s)
        self._output(m, platform, s)
        return m

    def _load_pass(self, m, s):
        """Pass 1, load: build the input handshake, the write port of the score buffer and the
        running max of each row, which goes to `q_max` a cycle after the row's last beat.
        """
        depth, elem_shape, w, length, n, q_wr = s.depth, s.elem_shape, s.w, s.length, s.n, s.q_wr
        q_max = s.q_max
        # -- Pass 1, load: write beats to the score buffer and track the row max. -------------
        a_bank = Signal()
        a_addr = Signal(range(2 * depth))
        a_elem = Signal(elem_shape)            # elements of the row before this beat
        most_negative = -(1 << (w - 1))
        a_max = Signal(signed(w))
        a_first = Signal(init=1)               # the next beat starts a row (a_max is stale)
        # The row's max goes to q_max a cycle after its last beat, so that the running-max loop
        # is only a comparison and a multiplexer.
        a_done = Signal()
        a_done_bank = Signal()
        # Rows from their first beat loaded to the exp pass's last read of them (`b_fin`): a
        # row may start loading while fewer than two are in the score buffer, or on the cycle
        # of that last read (the read port is not transparent, so the read still returns the
        # old beat). `i.ready` is a register: this condition computed a cycle ahead.
        q_rows = Signal(range(3))
        i_ready = Signal()                     # 0 in the cycle after reset, for `a_last`
        accept = Signal()
        m.d.comb += [self.i.ready.eq(i_ready), accept.eq(self.i.valid & i_ready)]
        # The beat's max by a tree of comparisons (lanes past the end of the row left out), then
        # the running max (its comparison is the borrow of a subtraction, a carry chain). (Lane 0
        # is always in the row.)
        cands = [self.i.payload[0]] + [Mux(a_elem + j < length, self.i.payload[j], most_negative)
                                       for j in range(1, n)]
        while len(cands) > 1:
            cands = [Mux(cands[k] > cands[k + 1], cands[k], cands[k + 1])
                     if k + 1 < len(cands) else cands[k] for k in range(0, len(cands), 2)]
        beat_max = Mux(a_first | (a_max - cands[0])[-1], cands[0], a_max)
        # The beat at a_elem is the row's last: a_elem + n >= length, registered (from the
        # next a_elem).
        a_last = Signal()
        m.d.sync += a_last.eq(Mux(accept, Mux(a_last, length <= n, a_elem + 2 * n >= length),
                                  a_elem + n >= length))
        m.d.comb += [
            q_wr.addr.eq(a_addr),
            q_wr.data.eq(self.i.payload),
            q_wr.en.eq(accept),
        ]
        m.d.sync += a_done.eq(0)
        with m.If(a_done):
            m.d.sync += q_max[a_done_bank].eq(a_max)
        with m.If(accept):
            m.d.sync += [a_max.eq(beat_max), a_first.eq(a_last)]
            with m.If(a_last):
                m.d.sync += [
                    a_done.eq(1), a_done_bank.eq(a_bank),
                    a_bank.eq(~a_bank), a_addr.eq(Mux(a_bank, 0, depth)), a_elem.eq(0),
                ]
            with m.Else():
                m.d.sync += [a_addr.eq(a_addr + 1), a_elem.eq(a_elem + n)]
        s.a_first, s.a_done, s.q_rows, s.i_ready = a_first, a_done, q_rows, i_ready
        s.accept, s.a_last = accept, a_last

    def _exp_issue(self, m, s):
        """Pass 2, exp, issue: build the sequencer that reads a loaded row from the score buffer a
        beat a cycle, the row counts that gate the load pass's `i.ready`, and the stage-0 registers
        of the exp pipeline.
        """
        depth, elem_shape, a_done, length_one = s.depth, s.elem_shape, s.a_done, s.length_one
        q_rd, n, length, next3, base = s.q_rd, s.n, s.length, s.next3, s.base
        length_two, q_rows, accept, a_first = s.length_two, s.q_rows, s.accept, s.a_first
        i_ready, a_last, w, q_max, half = s.i_ready, s.a_last, s.w, s.q_max, s.half
        # -- Pass 2, exp: issue reads, one beat per cycle, rows back to back. -----------------
        b_active = Signal()
        b_bank = Signal()
        b_ebank = Signal(range(3))
        b_addr = Signal(range(2 * depth))
        b_eaddr = Signal(range(3 * depth))
        b_elem = Signal(elem_shape)
        b_last = Signal()                   # b_elem + n >= length, registered
        b_pen = Signal()                    # b_elem + 2*n >= length, registered
        b_fin = Signal()
        m.d.comb += b_fin.eq(b_active & b_last)
        # A row's exp pass starts when the pass is idle or issues its last read (`b_free`), a
        # row is loaded (`q_wait > 0`, or its max is being stored: `a_done`), an exp bank is free
        # (`e_rows < 3`) and at most one row is between the start of its exp pass and the end of
        # its division (`inflight < 2`: the divider's slot).
        b_free = Signal(init=1)             # ~b_active | b_last
        b_room = Signal(init=1)             # e_rows < 3 and inflight < 2
        q_wait = Signal(range(3))           # rows loaded (a_done) whose exp pass did not start
        q_loaded = Signal()                 # q_wait > 0
        e_rows = Signal(range(4))           # rows from exp start to their last normalize read
        inflight = Signal(range(3))         # rows whose exp pass started and division did not end
        b_next_bank = Signal()              # the banks of the next row to start
        b_next_ebank = Signal(range(3))
        b_start = Signal()
        m.d.comb += b_start.eq(b_free & b_room & (q_loaded | a_done))
        # The exp pass's last read of a row is the next cycle: it starts a row of one beat or
        # issues the read before the last.
        b_fin_n = (b_start & length_one) | (b_active & ~b_last & b_pen)
        m.d.comb += q_rd.addr.eq(b_addr)
        with m.If(b_fin):
            m.d.sync += b_active.eq(0)
        with m.Elif(b_active):
            m.d.sync += [b_addr.eq(b_addr + 1), b_eaddr.eq(b_eaddr + 1), b_elem.eq(b_elem + n),
                         b_last.eq(b_pen), b_pen.eq(b_elem + 3 * n >= length)]
        with m.If(b_start):
            m.d.sync += [
                b_active.eq(1), b_bank.eq(b_next_bank), b_ebank.eq(b_next_ebank),
                b_next_bank.eq(~b_next_bank), b_next_ebank.eq(next3(b_next_ebank)),
                b_addr.eq(Mux(b_next_bank, depth, 0)), b_eaddr.eq(base(b_next_ebank, 3)),
                b_elem.eq(0), b_last.eq(length_one), b_pen.eq(length_two),
            ]
        m.d.sync += b_free.eq(Mux(b_start, length_one, ~b_active | b_last | b_pen))

        q_rows_n = Signal.like(q_rows)
        m.d.comb += q_rows_n.eq(q_rows + (accept & a_first) - b_fin)
        m.d.sync += [
            q_rows.eq(q_rows_n),
            i_ready.eq(Mux(accept, ~a_last, ~a_first) | (q_rows_n < 2) | b_fin_n),
            q_wait.eq(q_wait + a_done - b_start),
            q_loaded.eq(Mux(b_start, q_wait + a_done >= 2, q_wait + a_done >= 1)),
        ]

        # Stage 0: registered alongside the buffer read; the row max gets the rounding half of
        # the rescale, so that stage 2 gives x + half in one subtraction.
        v0 = Signal()
        last0 = Signal()
        elem0 = Signal(elem_shape)
        ebank0 = Signal(range(3))
        eaddr0 = Signal(range(3 * depth))
        max0 = Signal(signed(w + 1))
        m.d.sync += [
            v0.eq(b_active), last0.eq(b_last), elem0.eq(b_elem), ebank0.eq(b_ebank),
            eaddr0.eq(b_eaddr), max0.eq(q_max[b_bank] + half),
        ]
        mask0 = Signal(n)
        m.d.comb += mask0.eq(Cat(elem0 + j < length for j in range(n)))
        s.b_room, s.e_rows, s.inflight, s.b_start, s.v0 = b_room, e_rows, inflight, b_start, v0
        s.last0, s.ebank0, s.eaddr0, s.max0, s.mask0 = last0, ebank0, eaddr0, max0, mask0

    def _exp_pipeline(self, m, platform, s):
        """Pass 2, exp, datapath: build the per-lane pipeline from the score buffer's output to `e`
        (rescale, division by D, polynomial, shift) and the write of `e` to the exp buffer at stage
        14.
        """
        cfg, max0, w, ovf_t, n, q_rd, xw = s.cfg, s.max0, s.w, s.ovf_t, s.n, s.q_rd, s.xw
        amt, clamp, D, B, se, C, ew, mask0 = s.amt, s.clamp, s.D, s.B, s.se, s.C, s.ew, s.mask0
        v0, last0, ebank0, eaddr0, e_wr = s.v0, s.last0, s.ebank0, s.eaddr0, s.e_wr
        shift = cfg.variant == "shift"
        e_lanes = []
        max1 = delay(m, max0, 1, name="max")
        # Stage 1: the row max less the saturation threshold, for the comparison in stage 2.
        max_ovf1 = Signal(signed(w + 3))
        m.d.sync += max_ovf1.eq(max0 - ovf_t)
        for j in range(n):
            # Stage 1: the buffer's output registered (block RAM is slow to output).
            # The pipeline's data registers are reset-less: a value is only used where its
            # valid flag (`v0` delayed, reset) says so.
            q1 = Signal(signed(w), name=f"q1_{j}", reset_less=True)
            m.d.sync += q1.eq(q_rd.data[j])
            # Stage 2: distance from the row max plus the rounding half, 0 <= xa < 2**(w+1), and
            # whether x' saturates at 2**19 - 1: xa >= 2**(19 + sr - sl), compared as
            # q <= max + half - 2**(19 + sr - sl) (by the sign of the difference).
            xa = Signal(w + 1, name=f"xa2_{j}", reset_less=True)
            ovf = Signal(name=f"ovf2_{j}", reset_less=True)
            m.d.sync += [xa.eq(max1 - q1), ovf.eq(~(max_ovf1 - q1)[-1])]
            # Stage 3: rescale to units of S' by one right shift of (xa << MAX_LEFT) by amt (a
            # right shift by sr or a left shift by sl), saturated by OR-ing in the overflow.
            # Stage 4: times log2(e) by shifts (Shiftmax). "ibert" has no product, so there the
            # shift is split: by the multiple of 8 in stage 3 and by the rest in stage 4.
            xs = Cat(Const(0, cfg.MAX_LEFT), xa)
            y = Signal(xw + 1, name=f"y4_{j}", reset_less=True)
            if shift:
                x2 = Signal(xw, name=f"x3_{j}", reset_less=True)
                m.d.sync += [
                    x2.eq((xs >> amt)[:xw] | ovf.replicate(xw)),
                    y.eq(x2 + (x2 >> 1) - (x2 >> 4)),
                ]
            else:
                x2 = Signal(xw + 7, name=f"x3_{j}", reset_less=True)
                ovf3 = Signal(name=f"ovf3_{j}", reset_less=True)
                m.d.sync += [
                    x2.eq((xs >> Cat(Const(0, 3), amt[3:]))[:xw + 7]), ovf3.eq(ovf),
                    y.eq((x2 >> amt[:3])[:xw] | ovf3.replicate(xw)),
                ]
            # Stages 5-9: z, r = divmod(min(y, 30*D), D) by restoring division, 5 quotient
            # bits; the clamp is a flag (y > 30*D means z = 30, r = 0) found with the first.
            rem, z = y, Const(0, 5)
            clamped = Signal(name=f"cl5_{j}", reset_less=True)
            m.d.sync += clamped.eq((clamp - y)[-1])       # y > 30*D, as a borrow
            for k in reversed(range(5)):
                diff = rem - (D << k)
                nrem = Signal(xw, name=f"r{9 - k}_{j}", reset_less=True)
                nz = Signal(5, name=f"z{9 - k}_{j}", reset_less=True)
                take = ~diff[-1]
                m.d.sync += [
                    nrem.eq(Mux(take, diff, rem)),
                    nz.eq(z | Mux(take, 1 << k, 0)),
                ]
                rem, z = nrem, nz
            clamped = delay(m, clamped, 4, name=f"cl_{j}")
            # Stage 10: t = B - r, in (B - D, B]; the total right shift z + se.
            t = Signal(16, name=f"t10_{j}", reset_less=True)
            sh = Signal(range(31 + 16), name=f"sh10_{j}", reset_less=True)
            m.d.sync += [
                t.eq(Mux(clamped, B, B - rem)),
                sh.eq(Mux(clamped, cfg.CLAMP, z) + se),
            ]
            # Stage 11: the square ("ibert" only), registered in its DSP block (see hw.dsp).
            sq = Signal(16 if shift else 2 * 16, name=f"sq11_{j}", reset_less=True)
            if shift:
                m.d.sync += sq.eq(t)
            else:
                registered_product(m, platform, t, t, sq, name=f"sq11_{j}")
            # Stage 12: + C.
            v = Signal(len(sq) + (0 if shift else 1), name=f"v12_{j}", reset_less=True)
            m.d.sync += v.eq(sq if shift else sq + C)
            # Stages 13-14: e = v >> (z + se), by 8s then by 1s; 0 for lanes past the end of the
            # row.
            sh = delay(m, sh, 2, name=f"sh_{j}")
            vc = Signal(len(v), name=f"v13_{j}", reset_less=True)
            m.d.sync += vc.eq(v >> Cat(Const(0, 3), sh[3:]))
            sh = delay(m, sh, 1, name=f"sh13_{j}")
            e = Signal(ew, name=f"e14_{j}", reset_less=True)
            mask = delay(m, mask0[j], self.EXP_STAGES - 1, name=f"mask_{j}")  # at stage 13
            m.d.sync += e.eq(Mux(mask, vc >> sh[:3], 0))
            e_lanes.append(e)

        vE = delay(m, v0, self.EXP_STAGES, name="v")
        lastE = delay(m, last0, self.EXP_STAGES, name="last")
        ebankE = delay(m, ebank0, self.EXP_STAGES, name="ebank")
        eaddrE = delay(m, eaddr0, self.EXP_STAGES, name="eaddr")
        m.d.comb += [
            e_wr.addr.eq(eaddrE),
            e_wr.data.eq(Cat(*e_lanes)),
            e_wr.en.eq(vE),
        ]
        s.e_lanes, s.vE, s.lastE, s.ebankE = e_lanes, vE, lastE, ebankE

    def _divider(self, m, s):
        """Build the row sum of `e`, its one-row slot, and the radix-4 divider that computes the
        row's normalizer `f = 2**K // sum` into `f_reg`.
        """
        e_lanes, f_reg, vE, lastE, ebankE = s.e_lanes, s.f_reg, s.vE, s.lastE, s.ebankE
        # Row sum, handed to the divider through a one-row slot at the end of the row.
        row_sum = Signal(self.sum_width)
        total = row_sum
        for e in e_lanes:
            total = total + e
        pend_valid = Signal()
        pend_sum = Signal(self.sum_width)
        pend_ebank = Signal(range(3))

        # Divider: f = 2**K // sum by restoring division in radix 4 (two quotient bits a cycle,
        # from three trial subtractions of d, 2d and 3d). sum >= 2**14, so f < 2**(K-13) and the
        # remainder may start at 2**(K - 2*digits) <= 2**13 < sum.
        digits = -(-self.f_width // 2)
        div_busy = Signal()
        div_count = Signal(range(digits + 1))
        div_rem = Signal(self.sum_width)
        div_d = Signal(self.sum_width)
        div_d3 = Signal(self.sum_width + 2)
        div_q = Signal(2 * digits)
        div_ebank = Signal(range(3))
        div_fin = Signal()                  # div_busy & (div_count == 0), registered
        m.d.sync += div_fin.eq(div_busy & ~div_fin & (div_count == 1))
        with m.If(~div_busy & pend_valid):
            m.d.sync += [
                div_busy.eq(1), div_count.eq(digits),
                div_rem.eq(1 << (self.recip_bits - 2 * digits)), div_q.eq(0),
                div_d.eq(pend_sum), div_d3.eq(pend_sum + (pend_sum << 1)),
                div_ebank.eq(pend_ebank), pend_valid.eq(0),
            ]
        with m.If(div_busy & (div_count != 0)):
            r4 = Cat(Const(0, 2), div_rem)
            d1 = r4 - div_d
            d2 = r4 - (div_d << 1)
            d3 = r4 - div_d3
            with m.If(~d3[-1]):
                m.d.sync += [div_rem.eq(d3), div_q.eq(Cat(Const(3, 2), div_q))]
            with m.Elif(~d2[-1]):
                m.d.sync += [div_rem.eq(d2), div_q.eq(Cat(Const(2, 2), div_q))]
            with m.Elif(~d1[-1]):
                m.d.sync += [div_rem.eq(d1), div_q.eq(Cat(Const(1, 2), div_q))]
            with m.Else():
                m.d.sync += [div_rem.eq(r4), div_q.eq(Cat(Const(0, 2), div_q))]
            m.d.sync += div_count.eq(div_count - 1)
        with m.If(div_fin):
            m.d.sync += [div_busy.eq(0), f_reg[div_ebank].eq(div_q)]
        # A row ending while the divider takes the previous one from the slot refills the slot
        # (these statements come after the divider's, so they win). The slot never holds a row
        # when another ends: at most two rows are between exp start and division end.
        with m.If(vE):
            with m.If(lastE):
                m.d.sync += [row_sum.eq(0), pend_valid.eq(1), pend_sum.eq(total),
                             pend_ebank.eq(ebankE)]
            with m.Else():
                m.d.sync += row_sum.eq(total)
        s.div_fin = div_fin

    def _normalize_pass(self, m, s):
        """Pass 3, normalize, issue: build the output skid buffer, the sequencer that reads a
        divided row from the exp buffer on `advance`, and the hand-off counts and start conditions
        after the load pass.
        """
        depth, cfg, n, e_rd, length, next3 = s.depth, s.cfg, s.n, s.e_rd, s.length, s.next3
        base, e_rows, inflight, b_start = s.base, s.e_rows, s.inflight, s.b_start
        div_fin, b_room = s.div_fin, s.b_room
        # -- Pass 3, normalize: read e, multiply by f, round, saturate; stalls with `o`. ------
        # The pipeline advances on a register, the `i.ready` of the register slice on `o`: when
        # `o` holds a beat that is not taken, the beat behind it moves into the slice's skid
        # register, and the pipeline waits until `o` has taken the beat it holds.
        m.submodules.o_skid = o_skid = SkidBuffer(self.o.payload.shape())
        advance = Signal()
        m.d.comb += advance.eq(o_skid.i.ready)
        c_active = Signal()
        c_bank = Signal(range(3))
        c_addr = Signal(range(3 * depth))
        # Elements of the row from this beat on, a beat at a time; `last`: this beat ends the row.
        m.submodules.c_left = c_left = Countdown(cfg.max_len, step=n)
        c_last = c_left.last
        c_issue = Signal()
        m.d.comb += c_issue.eq(c_active & advance)
        c_fin = Signal()
        m.d.comb += c_fin.eq(c_issue & c_last)
        # A row's normalize pass starts when the pass is idle or issues its last read and a
        # row's division has ended (`c_wait > 0`).
        c_wait = Signal(range(4))           # rows whose division ended and normalize did not start
        c_divided = Signal()                # c_wait > 0
        c_next_bank = Signal(range(3))      # the bank of the next row to start
        c_start = Signal()
        m.d.comb += c_start.eq((~c_active | c_fin) & c_divided)
        m.d.comb += [e_rd.addr.eq(c_addr), e_rd.en.eq(advance)]
        with m.If(c_fin):
            m.d.sync += c_active.eq(0)
        with m.Elif(c_issue):
            m.d.sync += c_addr.eq(c_addr + 1)
        m.d.comb += [c_left.load.eq(c_start), c_left.total.eq(length),
                     c_left.en.eq(c_issue & ~c_last)]
        with m.If(c_start):
            m.d.sync += [c_active.eq(1), c_bank.eq(c_next_bank),
                         c_next_bank.eq(next3(c_next_bank)), c_addr.eq(base(c_next_bank, 3))]

        # The counts of the hand-offs after the load pass, and the start conditions computed a
        # cycle ahead from them.
        e_rows_n = Signal.like(e_rows)
        inflight_n = Signal.like(inflight)
        m.d.comb += [
            e_rows_n.eq(e_rows + b_start - c_fin),
            inflight_n.eq(inflight + b_start - div_fin),
        ]
        m.d.sync += [
            e_rows.eq(e_rows_n),
            inflight.eq(inflight_n),
            b_room.eq((e_rows_n < 3) & (inflight_n < 2)),
            c_wait.eq(c_wait + div_fin - c_start),
            c_divided.eq(Mux(c_start, c_wait + div_fin >= 2, c_wait + div_fin >= 1)),
        ]
        s.o_skid, s.advance, s.c_bank, s.c_left = o_skid, advance, c_bank, c_left
        s.c_issue = c_issue

    def _output(self, m, platform, s):
        """Pass 3, normalize, datapath: build the stalling pipeline that multiplies `e` by `f`,
        rounds, saturates and masks each lane, and drives `o` through the skid buffer.
        """
        n, cfg, ew, advance, c_issue, f_reg = s.n, s.cfg, s.ew, s.advance, s.c_issue, s.f_reg
        c_bank, c_left, e_rd, o_skid = s.c_bank, s.c_left, s.e_rd, s.o_skid
        # Stage 1: the buffer read; 2 and 3: its data registered twice (block RAM is slow to
        # output, and the multiplier may sit far from it); 4: the product e*f; 5: rounded;
        # 6: saturated and masked, on `o` (or in the skid register). All stages move together,
        # on `advance`.
        cv = [Signal(name=f"cv{k}") for k in range(1, 6)]
        cmask = [Signal(n, name=f"cmask{k}") for k in range(1, 6)]
        cf1, cf2, cf3 = (Signal(self.f_width, name=f"cf{k}", reset_less=True) for k in (1, 2, 3))
        drop = self.recip_bits - cfg.out_width
        prod_width = ew + self.f_width
        # The data registers are reset-less: a value is only used where its valid flag (`cv`,
        # reset) says so.
        ed = [Signal(ew, name=f"ed2_{j}", reset_less=True) for j in range(n)]
        ed3 = [Signal(ew, name=f"ed3_{j}", reset_less=True) for j in range(n)]
        prods = [Signal(prod_width, name=f"prod4_{j}", reset_less=True) for j in range(n)]
        rnds = [Signal(prod_width - drop + 1, name=f"rnd5_{j}", reset_less=True)
                for j in range(n)]
        out = Signal(self.o.payload.shape(), name="out")
        with m.If(advance):
            m.d.sync += [
                cv[0].eq(c_issue), cf1.eq(f_reg[c_bank]),
                cmask[0].eq(Cat(c_left.left > j for j in range(n))),
                cf2.eq(cf1), cf3.eq(cf2),
            ]
            m.d.sync += [a.eq(b) for a, b in zip(cv[1:], cv[:-1], strict=True)]
            m.d.sync += [a.eq(b) for a, b in zip(cmask[1:], cmask[:-1], strict=True)]
            for j in range(n):
                rnd = rnds[j]
                m.d.sync += [
                    ed[j].eq(e_rd.data[j]),
                    ed3[j].eq(ed[j]),
                    rnd.eq((prods[j] + (1 << (drop - 1))) >> drop),
                ]
        for j in range(n):
            # Stage 4, the product e*f, registered in its DSP block (see hw.dsp).
            registered_product(m, platform, ed3[j], cf3, prods[j], en=advance, name=f"prod4_{j}")
            rnd = rnds[j]
            m.d.comb += out[j].eq(Mux(cmask[-1][j], rnd[:cfg.out_width] | rnd[cfg.out_width:]
                                      .any().replicate(cfg.out_width), 0))

        # Stage 6 is the register slice: the stage-5 beat enters it as the pipeline advances.
        m.d.comb += [o_skid.i.valid.eq(cv[-1]), o_skid.i.payload.eq(out)]
        wiring.connect(m, o_skid.o, wiring.flipped(self.o))
