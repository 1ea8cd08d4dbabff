"""Integer-only LayerNorm: exact mean and variance, bitwise square root, one reciprocal per row."""

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .dsp import registered_product
from .requant import rounding_half, saturate

__all__ = ["layernorm_coef_layout", "LayerNorm"]

#: Row slots in the row buffer: one being written, up to three waiting for their row constants,
#: one being read out. Five let the per-row arithmetic (about 75 cycles in all) hide behind
#: rows of 32 beats.
SLOTS = 5
SQRT_WIDTH = 32     # the variance is normalized into [2**30, 2**32) before the square root
RECIP_BITS = 32     # factor = floor(2**32 / std), std in [2**15, 2**16): 18 quotient bits
RECIP_STEPS = 18
#: Normalization steps of the variance before the square root: shifts of 2**k bits for k =
#: NORM_STEPS .. 1, so up to 30 bits either way (v of 1 to 62 bits).
NORM_STEPS = 4
#: Operands of the output pass's products are split here: 17 unsigned bits fit an 18x18 block.
MUL_SPLIT = 17
#: Pipeline stages of the output pass from a beat's read to the output register (S1 to S11).
OUTPUT_STAGES = 11


def layernorm_coef_layout(cfg):
    """Payload of the coefficient write port: one beat (``lanes`` channels) of gamma and beta."""
    depth = -(-cfg.max_len // cfg.lanes)
    return data.StructLayout({
        "addr": range(depth),
        "gamma": data.ArrayLayout(signed(cfg.gamma_width), cfg.lanes),
        "beta": data.ArrayLayout(signed(cfg.beta_width), cfg.lanes),
    })


class LayerNorm(wiring.Component):
    """Normalizes rows of signed integers, bit-exact with :func:`sim.golden.layernorm`.

    A row of ``length`` elements arrives as ``ceil(length / lanes)`` beats on ``i`` (lanes past
    the row end are ignored) and leaves as as many beats on ``o`` (lanes past the row end are 0).
    Rows follow each other back to back.

    Algorithm (``L = length``, ``F = cfg.norm_frac = 16``, ``G = cfg.gamma_shift``):

    1. *Input pass*: ``s1 = sum(q)`` and ``s2 = sum(q**2)`` while the row is written into a slot
       of the row buffer;
    2. *Variance*: ``v = L*s2 - s1**2`` (exactly ``L**2`` times the population variance), both
       products by MSB-first shift-and-add over the bits of ``|s1|`` and ``L``;
    3. *Square root*: ``e = floor((32 - bit_length(v)) / 2)`` and ``v * 4**e`` (truncated) by
       a greedy normalization in :data:`NORM_STEPS` registered steps (shifts of 16, 8, 4 and 2
       bits); ``std = isqrt(v * 4**e)`` by the non-restoring method (16 steps, two radicand bits
       each: the remainder's sign picks adding ``4*res + 3`` or subtracting ``4*res + 1``), so
       ``std`` has 16 significant bits;
    4. *Reciprocal*: ``factor = floor(2**32 / std)`` by restoring division (18 steps), and at the
       same time, by shift-and-add on the quotient bits, ``a = L*factor`` and ``b = s1*factor``;
       ``factor = a = b = 0`` for ``v = 0``;
    5. *Output pass*: per element ``zq = round_shift(q*a - b, F - e)`` (``z * 2**F``, as
       ``q*a - b = (L*q - s1) * factor``), then
       ``y = saturate(round_shift(zq*gamma_j + beta_j, F + G), out_width)``.

    The row buffer holds :data:`SLOTS` rows, so steps 2-4 of one row (pipeline stages, each
    holding one row) overlap the input pass of the following rows and the output pass of the
    previous one.

    Parameters
    ----------
    cfg : LayerNormConfig
        ``lanes``, ``max_len``, ``in_width``, ``out_width``, ``gamma_width``, ``beta_width``.

    Members
    -------
    i : In(stream.Signature(ArrayLayout(signed(in_width), lanes)))
        Input rows.
    o : Out(stream.Signature(ArrayLayout(signed(out_width), lanes)))
        Output rows.
    length : In(range(max_len + 1))
        Row length ``L``, 1 to ``max_len``; set at least one cycle before a row's first beat
        and held constant while rows are in flight.
    coef : In(stream.Signature(layernorm_coef_layout(cfg)))
        Writes the integer gamma and beta (see :func:`sim.golden.layernorm_constants`) of beat
        ``addr``, channels ``addr*lanes`` to ``addr*lanes + lanes - 1``. Always ready. Load them
        before streaming rows; writing while rows are in flight changes rows in flight.

    Multipliers: ``2 * lanes`` general ones in the datapath (``q**2`` in the input pass, ``q*a``
    in the output pass) plus ``lanes`` for ``zq * gamma_j``; everything else (``L*s2``,
    ``s1**2``, ``L*factor``, ``s1*factor``, the division and the root) is shift-and-add over
    several cycles, once per row. ``q*a`` and ``zq*gamma_j`` are each two partial products (the
    low :data:`MUL_SPLIT` bits of ``a`` or ``zq``, and the rest), registered straight out of
    the multiplier blocks, registered again in the fabric beside their adders (a multiplier
    block may be placed far from them), and summed in the next stage (``q*a``, with its
    rounding term, over the next two: one carry chain each); so are the squares ``q**2``.

    Latency: ``M + 60`` cycles from the last input beat of a row to its first output beat, with
    ``M = bit_length(max_len * 2**(in_width-1))`` (the variance stage's step count): 82 for the
    defaults (``max_len=64``, ``in_width=16``, ``M=22``). After the last input beat, the row's
    sums are ready 4 cycles later; ``v`` ``M + 2`` cycles after that (take, ``M`` steps,
    subtraction); ``v * 4**e`` 4 later (:data:`NORM_STEPS`); ``std`` 17 later (take, 16 steps);
    ``a`` and ``b`` 20 later (take, 19 steps); the first output beat 13 later (take, read,
    11 pipeline stages).

    Throughput: a row takes ``max(ceil(L / lanes), M + 2, 22)`` cycles in steady state, so one
    beat per cycle when a row has at least ``M + 2`` beats (24 for the defaults): the variance
    stage takes ``M + 2`` cycles a row and the reciprocal stage 22. A row starts only when one of
    the :data:`SLOTS` row slots is free; a stalled output stops only the output pass.

    Timing: the ready, slot and address decisions come from registered flags (``w_first``,
    ``w_last``, a thermometer count of held slots, ``c_last``) and registered addresses, and
    every datapath stage holds one carry chain, one multiplier block or one shift.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self.depth = -(-cfg.max_len // cfg.lanes)   # beats per slot
        iw, L = cfg.in_width, cfg.max_len
        self.mag_width = (L << (iw - 1)).bit_length()           # |s1|
        self.s1_width = self.mag_width + 1                      # s1, signed
        self.s2_width = (L << (2 * iw - 2)).bit_length()        # s2, unsigned
        self.var_width = cfg.var_width                          # v, L*s2, s1**2
        self.a_width = (L << (RECIP_STEPS - 1)).bit_length()    # a = L*factor, unsigned
        self.b_width = self.s1_width + RECIP_STEPS               # b = s1*factor, signed
        sqrt_l = 1
        while sqrt_l * sqrt_l < L:
            sqrt_l += 1
        self.zq_width = (sqrt_l << cfg.norm_frac).bit_length() + 1
        self.max_shift = cfg.norm_frac - (SQRT_WIDTH - self.var_width) // 2
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(signed(iw), cfg.lanes))),
            "o": Out(stream.Signature(data.ArrayLayout(signed(cfg.out_width), cfg.lanes))),
            "length": In(range(cfg.max_len + 1)),
            "coef": In(stream.Signature(layernorm_coef_layout(cfg))),
        })

    def elaborate(self, platform):
        """Build the row and coefficient buffers, the coefficient writes and the count of rows
        holding a slot, then the input pass, the statistics stages (variance, square root,
        reciprocal) and the output pass by the methods below, in that order.
        """
        m = Module()
        cfg, n_lanes, D = self.cfg, self.cfg.lanes, self.depth
        L = self.length

        m.submodules.rows = rows = Memory(shape=data.ArrayLayout(signed(cfg.in_width), n_lanes),
                                          depth=SLOTS * D, init=[])
        m.submodules.coefs = coefs = Memory(
            shape=data.StructLayout({"gamma": data.ArrayLayout(signed(cfg.gamma_width), n_lanes),
                                     "beta": data.ArrayLayout(signed(cfg.beta_width), n_lanes)}),
            depth=D, init=[])
        row_w, row_r = rows.write_port(), rows.read_port()
        coef_w, coef_r = coefs.write_port(), coefs.read_port()

        # -- Coefficient writes. ---------------------------------------------------------------
        m.d.comb += [
            self.coef.ready.eq(1),
            coef_w.en.eq(self.coef.valid),
            coef_w.addr.eq(self.coef.payload.addr),
            coef_w.data.gamma.eq(self.coef.payload.gamma),
            coef_w.data.beta.eq(self.coef.payload.beta),
        ]

        # Rows holding a slot (first beat in .. last read), as a thermometer code: held[k] is
        # "more than k rows", so "all slots held" is one flip-flop and each bit steps from its
        # neighbours.
        held = Signal(SLOTS)
        row_start = Signal()
        row_end = Signal()
        with m.If(row_start & ~row_end):
            m.d.sync += held.eq(Cat(Const(1), held[:-1]))
        with m.Elif(row_end & ~row_start):
            m.d.sync += held.eq(held[1:])

        def next_base(base):
            return Mux(base == (SLOTS - 1) * D, 0, base + D)

        s = SimpleNamespace()
        s.cfg, s.n_lanes, s.D, s.L, s.row_w, s.row_r = cfg, n_lanes, D, L, row_w, row_r
        s.coef_r, s.held, s.row_start, s.row_end = coef_r, held, row_start, row_end
        s.next_base = next_base
        self._input_pass(m, platform, s)
        self._variance(m, s)
        self._sqrt(m, s)
        self._reciprocal(m, s)
        self._output_issue(m, s)
        self._output_pipeline(m, platform, s)
        return m

    def _input_pass(self, m, platform, s):
        """Stage 1, input pass: build the handshake on `i`, the writes of the row into its slot of
        the row buffer, and the pipeline (mask, square, add) that sums q and q**2 over the row into
        the token register `(a_s1, a_s2)`.
        """
        cfg, n_lanes, D, held, row_start = s.cfg, s.n_lanes, s.D, s.held, s.row_start
        row_w, next_base, L = s.row_w, s.next_base, s.L
        # -- 1. Input pass: buffer the row, sum q and q**2 (pipelined: mask, square, add). -------
        w_pos = Signal(range(cfg.max_len + n_lanes))   # element index of this beat's lane 0
        w_addr = Signal(range(SLOTS * D))               # row buffer address of this beat
        w_next = Signal(range(SLOTS * D), init=D % (SLOTS * D))   # base of the next slot
        # Registered flags, so that the ready decision needs no adder or comparator: w_first is
        # w_pos == 0; w_last is "this beat ends the row" (w_pos + n_lanes >= L), computed when
        # the previous beat is taken, or from L while waiting for a row's first beat (so L must
        # be set one cycle before that beat, and held while the row flows).
        w_first = Signal(init=1)
        w_last = Signal()

        # Data registers are reset-less throughout: each is only used where a valid flag, a
        # state or a `first` flag (all reset) says that it holds a value.
        p1_valid, p1_first, p1_last = Signal(), Signal(), Signal()
        p1_q = Signal(data.ArrayLayout(signed(cfg.in_width), n_lanes), reset_less=True)
        p2_valid, p2_first, p2_last = Signal(), Signal(), Signal()
        p2_q = Signal(data.ArrayLayout(signed(cfg.in_width), n_lanes), reset_less=True)
        p2_sq = [Signal(unsigned(2 * cfg.in_width), name=f"p2_sq_{j}", reset_less=True)
                 for j in range(n_lanes)]
        # Stage 3 holds the squares again, in the fabric beside the adders: a multiplier
        # block's output register may be placed far from them.
        p3_valid, p3_first, p3_last = Signal(), Signal(), Signal()
        p3_q = Signal(data.ArrayLayout(signed(cfg.in_width), n_lanes), reset_less=True)
        p3_sq = [Signal(unsigned(2 * cfg.in_width), name=f"p3_sq_{j}", reset_less=True)
                 for j in range(n_lanes)]
        acc1 = Signal(signed(self.s1_width), reset_less=True)
        acc2 = Signal(unsigned(self.s2_width), reset_less=True)
        a_full = Signal()   # a finished row's (s1, s2) waits for the variance stage
        a_s1 = Signal(signed(self.s1_width), reset_less=True)
        a_s2 = Signal(unsigned(self.s2_width), reset_less=True)

        room = ~w_first | ~held[SLOTS - 1]
        # A row's sums need the token register: take its last beat only when nothing is pending.
        token_free = ~w_last | ~(a_full | p1_last | p2_last | p3_last)
        fire = Signal()
        m.d.comb += [
            self.i.ready.eq(room & token_free),
            fire.eq(self.i.valid & self.i.ready),
            row_start.eq(fire & w_first),
            row_w.en.eq(fire),
            row_w.addr.eq(w_addr),
            row_w.data.eq(self.i.payload),
        ]
        with m.If(fire):
            m.d.sync += w_first.eq(w_last)
            with m.If(w_last):
                m.d.sync += [w_pos.eq(0), w_addr.eq(w_next), w_next.eq(next_base(w_next))]
            with m.Else():
                m.d.sync += [w_pos.eq(w_pos + n_lanes), w_addr.eq(w_addr + 1)]
        with m.If(fire & ~w_last):
            m.d.sync += w_last.eq(w_pos + 2 * n_lanes >= L)
        with m.Elif(fire | w_first):
            m.d.sync += w_last.eq(L <= n_lanes)
        m.d.sync += [p1_valid.eq(fire), p1_first.eq(fire & w_first),
                     p1_last.eq(fire & w_last)]
        for j in range(n_lanes):
            m.d.sync += p1_q[j].eq(Mux(w_pos + j < L, self.i.payload[j], 0))
        m.d.sync += [p2_valid.eq(p1_valid), p2_first.eq(p1_first), p2_last.eq(p1_last),
                     p2_q.eq(p1_q)]
        for j in range(n_lanes):
            # q**2, registered in its DSP block (see hw.dsp).
            registered_product(m, platform, p1_q[j], p1_q[j], p2_sq[j], name=f"p2_sq_{j}")
        m.d.sync += [p3_valid.eq(p2_valid), p3_first.eq(p2_first), p3_last.eq(p2_last),
                     p3_q.eq(p2_q), *(p3_sq[j].eq(p2_sq[j]) for j in range(n_lanes))]
        sum1 = Mux(p3_first, 0, acc1) + sum(p3_q[j] for j in range(n_lanes))
        sum2 = Mux(p3_first, 0, acc2) + sum(p3_sq[j] for j in range(n_lanes))
        with m.If(p3_valid):
            m.d.sync += [acc1.eq(sum1), acc2.eq(sum2)]
            with m.If(p3_last):
                m.d.sync += [a_s1.eq(sum1), a_s2.eq(sum2), a_full.eq(1)]
        s.a_full, s.a_s1, s.a_s2 = a_full, a_s1, a_s2

    def _variance(self, m, s):
        """Stage 2: build the FSM that computes the variance v = L*s2 - s1**2 by MSB-first shift-
        and-add, and the age counter of its result.
        """
        a_full, a_s1, a_s2, L = s.a_full, s.a_s1, s.a_s2, s.L
        # -- 2. Variance v = L*s2 - s1**2, MSB-first shift-and-add. ------------------------------
        MW, VW = self.mag_width, self.var_width
        v_s1 = Signal(signed(self.s1_width), reset_less=True)
        v_mag = Signal(unsigned(MW), reset_less=True)        # |s1|
        v_s2 = Signal(unsigned(self.s2_width), reset_less=True)
        v_x = Signal(unsigned(MW), reset_less=True)          # |s1| bits, consumed MSB first
        v_l = Signal(unsigned(MW), reset_less=True)          # L bits, consumed MSB first
        v_sq = Signal(unsigned(2 * MW), reset_less=True)
        v_ls = Signal(unsigned(VW + 1), reset_less=True)
        v_cnt = Signal(range(MW + 1))
        v_out = Signal(unsigned(VW), reset_less=True)
        v_s1_out = Signal(signed(self.s1_width), reset_less=True)
        v_done = Signal()   # (v_out, v_s1_out) wait for the square-root stage
        n_age = Signal(range(NORM_STEPS + 1))   # cycles since v_out was written, up to a limit
        with m.If(n_age != NORM_STEPS):
            m.d.sync += n_age.eq(n_age + 1)
        with m.FSM(name="var"):
            with m.State("IDLE"):   # waiting for a row's sums
                with m.If(a_full):
                    m.d.sync += [
                        a_full.eq(0),
                        v_s1.eq(a_s1), v_s2.eq(a_s2),
                        v_mag.eq(Mux(a_s1 < 0, -a_s1, a_s1)),
                        v_x.eq(Mux(a_s1 < 0, -a_s1, a_s1)), v_l.eq(L),
                        v_sq.eq(0), v_ls.eq(0), v_cnt.eq(MW),
                    ]
                    m.next = "RUN"
            with m.State("RUN"):    # one bit of |s1| and of L per cycle
                m.d.sync += [
                    v_sq.eq((v_sq << 1) + Mux(v_x[-1], v_mag, 0)),
                    v_ls.eq((v_ls << 1) + Mux(v_l[-1], v_s2, 0)),
                    v_x.eq(v_x << 1), v_l.eq(v_l << 1), v_cnt.eq(v_cnt - 1),
                ]
                with m.If(v_cnt == 1):
                    m.next = "SUB"
            with m.State("SUB"):    # v = L*s2 - s1**2 >= 0, once the previous v is taken
                with m.If(~v_done):
                    m.d.sync += [v_out.eq(v_ls - v_sq), v_s1_out.eq(v_s1), v_done.eq(1),
                                 n_age.eq(0)]
                    m.next = "IDLE"
        s.VW, s.v_out, s.v_s1_out, s.v_done, s.n_age = VW, v_out, v_s1_out, v_done, n_age

    def _sqrt(self, m, s):
        """Stage 3: build the free-running normalization of v into [2**30, 2**32) and the FSM that
        takes its non-restoring square root, one bit a cycle.
        """
        VW, v_out, v_done, n_age, v_s1_out = s.VW, s.v_out, s.v_done, s.n_age, s.v_s1_out
        # -- 3. Square root of v normalized into [2**30, 2**32). ---------------------------------
        r_s1 = Signal(signed(self.s1_width), reset_less=True)
        r_zero = Signal()
        r_e = Signal(signed(8), reset_less=True)
        # Non-restoring root: r_rem is the signed remainder (|r_rem| < 2**17), r_res the root so
        # far, r_rad the radicand's bits, consumed two per step, MSB first. r_rem and r_res keep
        # their reset: without it, Yosys makes their clearing a synchronous reset (LSR) behind
        # a longer decode.
        r_rem = Signal(signed(SQRT_WIDTH // 2 + 3))
        r_res = Signal(unsigned(SQRT_WIDTH // 2))
        r_rad = Signal(unsigned(SQRT_WIDTH), reset_less=True)
        r_step = Signal(SQRT_WIDTH // 2)          # one-hot, the last step when bit 0
        r_done = Signal()
        # Normalization: NORM_STEPS registers, free-running on v_out (held until this stage
        # takes it). Step k (shifts 2**k, largest first) shifts right while the result stays
        # >= 2**30, else left while it stays < 2**32: the greedy search ends in [2**30, 2**32)
        # with e = floor((32 - bit_length(v)) / 2), and the truncating right shifts compose
        # exactly. e is the sum of the steps' +-2**(k-1). n_age counts the cycles since v_out
        # was written: the last step's register holds the new value from NORM_STEPS on.
        XW = max(VW, SQRT_WIDTH)
        n_zero = Signal()
        m.d.sync += n_zero.eq(v_out == 0)
        n_x, n_left, n_right = v_out, [], []
        for k in reversed(range(1, NORM_STEPS + 1)):
            size = 1 << k
            right = (n_x[SQRT_WIDTH - 2 + size:] != 0 if SQRT_WIDTH - 2 + size < XW
                     else Const(0))
            left = n_x[SQRT_WIDTH - size:] == 0
            x = Signal(unsigned(XW), name=f"r_norm{k}", reset_less=True)
            n_left.append(Signal(name=f"r_left{k}"))
            n_right.append(Signal(name=f"r_right{k}"))
            m.d.sync += [
                x.eq(Mux(right, n_x >> size, Mux(left, n_x << size, n_x))[:XW]),
                n_left[-1].eq(~right & left), n_right[-1].eq(right),
            ]
            n_x = x
        e_left = Cat(*reversed(n_left))     # bit k-1 from step k
        e_right = Cat(*reversed(n_right))
        with m.FSM(name="sqrt"):
            with m.State("IDLE"):   # waiting for a normalized variance: v * 4**e, truncated
                m.d.sync += [r_rem.eq(0), r_res.eq(0)]
                with m.If(v_done & (n_age == NORM_STEPS)):
                    m.d.sync += [
                        v_done.eq(0), r_s1.eq(v_s1_out), r_zero.eq(n_zero),
                        r_rad.eq(n_x[:SQRT_WIDTH]),
                        # bit_length(0) = 0: e = 16 (the steps reach 15 at most)
                        r_e.eq(Mux(n_zero, SQRT_WIDTH // 2, e_left - e_right)),
                        r_step.eq(1 << (SQRT_WIDTH // 2 - 1)),
                    ]
                    m.next = "ROOT"
            with m.State("ROOT"):   # one root bit per cycle, 16 cycles
                # rem = 4*rem + next two bits, minus 4*res + 1 when rem >= 0, else plus
                # 4*res + 3; the new bit is 1 when the new rem >= 0. The add/subtract choice is
                # the registered sign, so each step is one carry chain from flip-flops.
                r4 = Cat(r_rad[-2:], r_rem).as_signed()
                rem = Mux(r_rem[-1], r4 + Cat(Const(3, 2), r_res),
                          r4 - Cat(Const(1, 2), r_res))[:len(r_rem)].as_signed()
                m.d.sync += [r_rem.eq(rem), r_res.eq(Cat(~rem[-1], r_res)),
                             r_rad.eq(r_rad << 2), r_step.eq(r_step >> 1)]
                with m.If(r_step[0]):
                    m.d.sync += r_done.eq(1)
                    m.next = "DONE"
            with m.State("DONE"):   # hold std until the reciprocal stage takes it
                with m.If(~r_done):
                    m.next = "IDLE"
        s.r_s1, s.r_zero, s.r_e, s.r_res, s.r_done = r_s1, r_zero, r_e, r_res, r_done

    def _reciprocal(self, m, s):
        """Stage 4: build the FSM that computes factor = floor(2**32 / std) a quotient bit a cycle,
        and with it a = L*factor and b = s1*factor.
        """
        r_done, r_res, r_s1, r_zero, r_e, L = s.r_done, s.r_res, s.r_s1, s.r_zero, s.r_e, s.L
        # -- 4. factor = floor(2**32 / std); a = L*factor, b = s1*factor. ------------------------
        d_std = Signal(unsigned(SQRT_WIDTH // 2), reset_less=True)
        d_rem = Signal(unsigned(SQRT_WIDTH // 2 + 1), reset_less=True)
        d_s1 = Signal(signed(self.s1_width), reset_less=True)
        d_zero = Signal()
        d_e = Signal(signed(8), reset_less=True)
        d_a = Signal(unsigned(self.a_width), reset_less=True)
        d_b = Signal(signed(self.b_width), reset_less=True)
        d_cnt = Signal(range(RECIP_STEPS + 2))
        d_qbit = Signal()
        d_done = Signal()
        with m.FSM(name="recip"):
            with m.State("IDLE"):   # waiting for a square root
                with m.If(r_done):
                    m.d.sync += [
                        r_done.eq(0),
                        d_std.eq(r_res), d_s1.eq(r_s1), d_zero.eq(r_zero), d_e.eq(r_e),
                        # 2**32 / std, std >= 2**15: the first 15 numerator bits give no
                        # quotient bit and leave 2**14; the next 18 bits are zeros.
                        d_rem.eq(1 << (RECIP_BITS - RECIP_STEPS)),
                        d_a.eq(0), d_b.eq(0), d_qbit.eq(0), d_cnt.eq(RECIP_STEPS + 1),
                    ]
                    m.next = "RUN"
            with m.State("RUN"):    # one quotient bit per cycle, MSB first
                r2 = d_rem << 1
                bit = (r2 >= d_std) & ~d_zero
                # a and b take each quotient bit one cycle later (d_qbit), off the critical path;
                # hence one step more than there are quotient bits.
                m.d.sync += [
                    d_rem.eq(Mux(bit, r2 - d_std, r2)),
                    d_qbit.eq(bit),
                    d_a.eq((d_a << 1) + Mux(d_qbit, L, 0)),
                    d_b.eq((d_b << 1) + Mux(d_qbit, d_s1, 0)),
                    d_cnt.eq(d_cnt - 1),
                ]
                with m.If(d_cnt == 1):
                    m.d.sync += d_done.eq(1)
                    m.next = "DONE"
            with m.State("DONE"):   # hold (a, b, e) until the output pass takes them
                with m.If(~d_done):
                    m.next = "IDLE"
        s.d_e, s.d_a, s.d_b, s.d_done = d_e, d_a, d_b, d_done

    def _output_issue(self, m, s):
        """Stage 5, output pass, issue: build the pipeline's `advance`, the row's shift and rounding
        term, and the sequencer that takes a row's constants and reads its beats from the row and
        coefficient buffers.
        """
        cfg, d_e, n_lanes, D, d_done, row_end = s.cfg, s.d_e, s.n_lanes, s.D, s.d_done, s.row_end
        next_base, L, d_a, d_b, row_r, coef_r = s.next_base, s.L, s.d_a, s.d_b, s.row_r, s.coef_r
        # -- 5. Output pass: a pipeline that advances when the output is free or taken. ---------
        advance = Signal()
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)

        # The row's shift and rounding term, from d_e (held from the reciprocal stage's start,
        # 20 cycles before d_done): registered, so taking the constants is one subtraction.
        d_sh = Signal(range(self.max_shift + 1), reset_less=True)
        d_half = Signal(unsigned(self.max_shift), reset_less=True)
        m.d.sync += [d_sh.eq(cfg.norm_frac - d_e),
                     d_half.eq(rounding_half(d_sh, self.max_shift))]

        c_busy = Signal()
        c_pos = Signal(range(cfg.max_len + n_lanes))
        c_idx = Signal(range(D))
        c_addr = Signal(range(SLOTS * D))                  # row buffer address of this beat
        c_next = Signal(range(SLOTS * D), init=D % (SLOTS * D))   # base of the next slot
        c_last = Signal()     # this beat ends the row (c_pos + n_lanes >= L), registered
        c_a = Signal(unsigned(self.a_width), reset_less=True)
        c_sh = Signal(range(self.max_shift + 1), reset_less=True)
        c_hb = Signal(signed(self.b_width + 1), reset_less=True)   # 2**(sh-1) - b: rounding, offset
        issue = c_busy & advance
        take = d_done & (~c_busy | (issue & c_last))
        m.d.comb += row_end.eq(issue & c_last)
        with m.If(issue):
            with m.If(c_last):
                m.d.sync += [c_busy.eq(0), c_pos.eq(0), c_idx.eq(0),
                             c_addr.eq(c_next), c_next.eq(next_base(c_next))]
            with m.Else():
                m.d.sync += [c_pos.eq(c_pos + n_lanes), c_idx.eq(c_idx + 1),
                             c_addr.eq(c_addr + 1),
                             c_last.eq(c_pos + 2 * n_lanes >= L)]
        # Take the next row's constants when idle or on the last read of the current row.
        with m.If(take):
            m.d.sync += [d_done.eq(0), c_busy.eq(1), c_a.eq(d_a), c_sh.eq(d_sh),
                         c_hb.eq(d_half - d_b), c_last.eq(L <= n_lanes)]
        m.d.comb += [
            row_r.addr.eq(c_addr), row_r.en.eq(advance),
            coef_r.addr.eq(c_idx), coef_r.en.eq(advance),
        ]
        s.advance, s.c_pos, s.c_a, s.c_sh, s.c_hb, s.issue = advance, c_pos, c_a, c_sh, c_hb, issue

    def _output_pipeline(self, m, platform, s):
        """Stage 5, output pass, datapath: build the stages that advance with the output, from the
        buffers' data through q*a, the shift, zq*gamma + beta and the saturation, to `o`.
        """
        n_lanes, cfg, c_a, c_hb, c_sh, advance = s.n_lanes, s.cfg, s.c_a, s.c_hb, s.c_sh, s.advance
        issue, row_r, coef_r, c_pos, L = s.issue, s.row_r, s.coef_r, s.c_pos, s.L
        # Stages (each advances with the output): S1 memory data out; S2 memory data
        # registered; S3 the partial products of q*a, S3f the same in the fabric; S4 t = (low
        # product) + hb, with hb = 2**(sh-1) - b per row; S5 u = q*a + hb = (high product <<
        # MUL_SPLIT) + t; S6 zq = u >> sh; S7 the partial products of zq*gamma, S7f the same in
        # the fabric; S8 pz = zq*gamma (one carry chain), beside the rounded beta; S9 p = pz +
        # beta + 2**(T-1); output: saturate(p >> T). S3f and S7f hold the products beside their
        # adders: a multiplier block's output register may be placed far from them.
        lanes_t = data.ArrayLayout(unsigned(1), n_lanes)
        gam_t = data.ArrayLayout(signed(cfg.gamma_width), n_lanes)
        bet_t = data.ArrayLayout(signed(cfg.beta_width), n_lanes)
        shift = cfg.norm_frac + cfg.gamma_shift
        st = [{"valid": Signal(name=f"s{k}_valid"), "mask": Signal(lanes_t, name=f"s{k}_mask")}
              for k in range(1, OUTPUT_STAGES + 1)]
        s1_a, s1_hb, s1_sh = Signal.like(c_a), Signal.like(c_hb), Signal.like(c_sh)
        s2_a, s2_hb, s2_sh = Signal.like(c_a), Signal.like(c_hb), Signal.like(c_sh)
        s2_q = Signal(data.ArrayLayout(signed(cfg.in_width), n_lanes), reset_less=True)
        s2_g, s2_beta = Signal(gam_t, reset_less=True), Signal(bet_t, reset_less=True)
        s3_hb, s3_sh = Signal.like(c_hb), Signal.like(c_sh)
        # q*a and zq*gamma as two partial products each (low 17 bits of a or zq, unsigned,
        # and the rest): one 18x18 multiplier block apiece, registered in the block (see
        # hw.dsp) before any adder.
        s2_a_lo, s2_a_hi = s2_a[:MUL_SPLIT], s2_a[MUL_SPLIT:]
        s3_nl = [Signal((s2_q[0] * s2_a_lo).shape(), name=f"s3_nl_{j}", reset_less=True)
                 for j in range(n_lanes)]
        s3_nh = [Signal((s2_q[0] * s2_a_hi).shape(), name=f"s3_nh_{j}", reset_less=True)
                 for j in range(n_lanes)]
        s3_g, s3_beta = Signal(gam_t, reset_less=True), Signal(bet_t, reset_less=True)
        s3f_hb, s3f_sh = Signal.like(c_hb), Signal.like(c_sh)
        s3f_nl = [Signal.like(s3_nl[j], name=f"s3f_nl_{j}") for j in range(n_lanes)]
        s3f_nh = [Signal.like(s3_nh[j], name=f"s3f_nh_{j}") for j in range(n_lanes)]
        s3f_g, s3f_beta = Signal(gam_t, reset_less=True), Signal(bet_t, reset_less=True)
        s4_sh = Signal.like(c_sh)
        s4_t = [Signal((s3f_nl[0] + s3f_hb).shape(), name=f"s4_t_{j}", reset_less=True)
                for j in range(n_lanes)]
        s4_nh = [Signal.like(s3_nh[j], name=f"s4_nh_{j}") for j in range(n_lanes)]
        beth_t = data.ArrayLayout((s3_beta[0] + (1 << (shift - 1))).shape(), n_lanes)
        s4_g, s4_bh = Signal(gam_t, reset_less=True), Signal(beth_t, reset_less=True)
        s5_sh = Signal.like(c_sh)
        s5_u = Signal(data.ArrayLayout(((s4_nh[0] << MUL_SPLIT) + s4_t[0]).shape(), n_lanes),
                      reset_less=True)
        s5_g, s5_bh = Signal(gam_t, reset_less=True), Signal(beth_t, reset_less=True)
        s6_zq = Signal(data.ArrayLayout(signed(self.zq_width), n_lanes), reset_less=True)
        s6_g, s6_bh = Signal(gam_t, reset_less=True), Signal(beth_t, reset_less=True)
        s6_zq_lo = [s6_zq[j][:MUL_SPLIT] for j in range(n_lanes)]
        s6_zq_hi = [s6_zq[j][MUL_SPLIT:].as_signed() for j in range(n_lanes)]
        s7_pl = [Signal((s6_zq_lo[0] * s6_g[0]).shape(), name=f"s7_pl_{j}", reset_less=True)
                 for j in range(n_lanes)]
        s7_ph = [Signal((s6_zq_hi[0] * s6_g[0]).shape(), name=f"s7_ph_{j}", reset_less=True)
                 for j in range(n_lanes)]
        s7_bh, s7f_bh = Signal(beth_t, reset_less=True), Signal(beth_t, reset_less=True)
        s7f_pl = [Signal.like(s7_pl[j], name=f"s7f_pl_{j}") for j in range(n_lanes)]
        s7f_ph = [Signal.like(s7_ph[j], name=f"s7f_ph_{j}") for j in range(n_lanes)]
        s8_pz = [Signal(((s7_ph[0] << MUL_SPLIT) + s7_pl[0]).shape(), name=f"s8_pz_{j}",
                        reset_less=True) for j in range(n_lanes)]
        s8_bh = Signal(beth_t, reset_less=True)
        s9_p = Signal(data.ArrayLayout((s8_pz[0] + s8_bh[0]).shape(), n_lanes),
                      reset_less=True)
        for j in range(n_lanes):
            for prod, a, b in [(s3_nl[j], s2_q[j], s2_a_lo), (s3_nh[j], s2_q[j], s2_a_hi),
                               (s7_pl[j], s6_zq_lo[j], s6_g[j]), (s7_ph[j], s6_zq_hi[j], s6_g[j])]:
                registered_product(m, platform, a, b, prod, en=advance, name=prod.name)
        with m.If(advance):
            m.d.sync += [st[0]["valid"].eq(issue), self.o.valid.eq(st[-1]["valid"])]
            for k in range(1, len(st)):
                m.d.sync += [st[k]["valid"].eq(st[k - 1]["valid"]),
                             st[k]["mask"].eq(st[k - 1]["mask"])]
            m.d.sync += [
                s1_a.eq(c_a), s1_hb.eq(c_hb), s1_sh.eq(c_sh),
                s2_a.eq(s1_a), s2_hb.eq(s1_hb), s2_sh.eq(s1_sh), s2_q.eq(row_r.data),
                s2_g.eq(coef_r.data.gamma), s2_beta.eq(coef_r.data.beta),
                s3_hb.eq(s2_hb), s3_sh.eq(s2_sh), s3_g.eq(s2_g), s3_beta.eq(s2_beta),
                s3f_hb.eq(s3_hb), s3f_sh.eq(s3_sh), s3f_g.eq(s3_g), s3f_beta.eq(s3_beta),
                s4_sh.eq(s3f_sh), s4_g.eq(s3f_g), s5_sh.eq(s4_sh), s5_g.eq(s4_g), s6_g.eq(s5_g),
                s5_bh.eq(s4_bh), s6_bh.eq(s5_bh), s7_bh.eq(s6_bh), s7f_bh.eq(s7_bh),
                s8_bh.eq(s7f_bh),
            ]
            for j in range(n_lanes):
                m.d.sync += [
                    st[0]["mask"][j].eq(c_pos + j < L),
                    s3f_nl[j].eq(s3_nl[j]), s3f_nh[j].eq(s3_nh[j]),
                    s7f_pl[j].eq(s7_pl[j]), s7f_ph[j].eq(s7_ph[j]),
                    s4_t[j].eq(s3f_nl[j] + s3f_hb), s4_nh[j].eq(s3f_nh[j]),
                    s4_bh[j].eq(s3f_beta[j] + (1 << (shift - 1))),
                    s5_u[j].eq((s4_nh[j] << MUL_SPLIT) + s4_t[j]),
                    s6_zq[j].eq(s5_u[j] >> s5_sh),
                    s8_pz[j].eq((s7f_ph[j] << MUL_SPLIT) + s7f_pl[j]),
                    s9_p[j].eq(s8_pz[j] + s8_bh[j]),
                    self.o.payload[j].eq(Mux(st[-1]["mask"][j],
                                             saturate(s9_p[j] >> shift, cfg.out_width), 0)),
                ]
