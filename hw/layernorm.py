"""Integer-only LayerNorm: exact mean and variance, bitwise square root, one reciprocal per row."""

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .requant import saturate

__all__ = ["layernorm_coef_layout", "LayerNorm"]

#: Row slots in the row buffer: one being written, up to three waiting for their row constants,
#: one being read out. Five let the per-row arithmetic (about 70 cycles in all) hide behind
#: rows of 32 beats.
SLOTS = 5
SQRT_WIDTH = 32     # the variance is normalized into [2**30, 2**32) before the square root
RECIP_BITS = 32     # factor = floor(2**32 / std), std in [2**15, 2**16): 18 quotient bits
RECIP_STEPS = 18


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
    3. *Square root*: ``e = floor((32 - bit_length(v)) / 2)``; ``std = isqrt(v * 4**e)`` by the
       bitwise shift-subtract method (16 steps), so ``std`` has 16 significant bits;
    4. *Reciprocal*: ``factor = floor(2**32 / std)`` by restoring division (18 steps), and at the
       same time, by shift-and-add on the quotient bits, ``a = L*factor`` and ``b = s1*factor``;
       ``factor = a = b = 0`` for ``v = 0``;
    5. *Output pass*: per element ``zq = round_shift(q*a - b, F - e)`` (``z * 2**F``, as
       ``q*a - b = (L*q - s1) * factor``), then
       ``y = saturate(round_shift(zq*gamma_j + beta_j, F + G), out_width)``.

    The row buffer holds :data:`SLOTS` rows, so steps 2-4 of one row (three pipeline stages, each
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
        Row length ``L``, 1 to ``max_len``; held constant while rows are in flight.
    coef : In(stream.Signature(layernorm_coef_layout(cfg)))
        Writes the integer gamma and beta (see :func:`sim.golden.layernorm_constants`) of beat
        ``addr``, channels ``addr*lanes`` to ``addr*lanes + lanes - 1``. Always ready. Load them
        before streaming rows; writing while rows are in flight changes rows in flight.

    Multipliers: ``2 * lanes`` general ones in the datapath (``q**2`` in the input pass, ``q*a``
    in the output pass) plus ``lanes`` for ``zq * gamma_j``; everything else (``L*s2``,
    ``s1**2``, ``L*factor``, ``s1*factor``, the division and the root) is shift-and-add over
    several cycles, once per row.

    Latency: ``M + 51`` cycles from the last input beat of a row to its first output beat, with
    ``M = bit_length(max_len * 2**(in_width-1))`` (the variance stage's step count): 73 for the
    defaults (``max_len=64``, ``in_width=16``, ``M=22``). Input pass 3, variance ``M + 3``,
    square root 20, reciprocal 21, output pipeline 6, plus one handover cycle per stage.

    Throughput: one beat per cycle in steady state when a row has at least ``M + 4`` beats
    (26 for the defaults, so every row of 32 or more at ``lanes=1``); shorter rows take
    ``M + 4`` cycles each (the variance stage is the slowest). A row starts only when one of
    the :data:`SLOTS` row slots is free; a stalled output stops only the output pass.
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
        self.n_width = ((L << iw) << (RECIP_STEPS - 1)).bit_length() + 1   # q*a - b
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

        inflight = Signal(range(SLOTS + 1))   # rows holding a slot (first beat in .. last read)
        row_start = Signal()
        row_end = Signal()
        m.d.sync += inflight.eq(inflight + row_start - row_end)

        def next_base(base):
            return Mux(base == (SLOTS - 1) * D, 0, base + D)

        # -- 1. Input pass: buffer the row, sum q and q**2 (pipelined: mask, square, add). -------
        w_pos = Signal(range(cfg.max_len + n_lanes))   # element index of this beat's lane 0
        w_idx = Signal(range(D))
        w_base = Signal(range(SLOTS * D))
        # This beat ends the row: w_pos + n_lanes >= L, without an adder on the ready path. A
        # row's first beat compares L with a constant; later beats read w_last_q, set when the
        # previous beat was taken (L is held while a row flows).
        w_last_q = Signal()
        w_last = Mux(w_pos == 0, L <= n_lanes, w_last_q)

        p1_valid, p1_first, p1_last = Signal(), Signal(), Signal()
        p1_q = Signal(data.ArrayLayout(signed(cfg.in_width), n_lanes))
        p2_valid, p2_first, p2_last = Signal(), Signal(), Signal()
        p2_q = Signal(data.ArrayLayout(signed(cfg.in_width), n_lanes))
        p2_sq = Signal(data.ArrayLayout(unsigned(2 * cfg.in_width), n_lanes))
        acc1, acc2 = Signal(signed(self.s1_width)), Signal(unsigned(self.s2_width))
        a_full = Signal()   # a finished row's (s1, s2) waits for the variance stage
        a_s1, a_s2 = Signal(signed(self.s1_width)), Signal(unsigned(self.s2_width))

        room = (w_pos != 0) | (inflight < SLOTS)
        # A row's sums need the token register: take its last beat only when nothing is pending.
        token_free = ~w_last | ~(a_full | p1_last | p2_last)
        fire = Signal()
        m.d.comb += [
            self.i.ready.eq(room & token_free),
            fire.eq(self.i.valid & self.i.ready),
            row_start.eq(fire & (w_pos == 0)),
            row_w.en.eq(fire),
            row_w.addr.eq(w_base + w_idx),
            row_w.data.eq(self.i.payload),
        ]
        with m.If(fire):
            with m.If(w_last):
                m.d.sync += [w_pos.eq(0), w_idx.eq(0), w_base.eq(next_base(w_base))]
            with m.Else():
                m.d.sync += [w_pos.eq(w_pos + n_lanes), w_idx.eq(w_idx + 1),
                             w_last_q.eq(w_pos + 2 * n_lanes >= L)]
        m.d.sync += [p1_valid.eq(fire), p1_first.eq(fire & (w_pos == 0)),
                     p1_last.eq(fire & w_last)]
        for j in range(n_lanes):
            m.d.sync += p1_q[j].eq(Mux(w_pos + j < L, self.i.payload[j], 0))
        m.d.sync += [p2_valid.eq(p1_valid), p2_first.eq(p1_first), p2_last.eq(p1_last),
                     p2_q.eq(p1_q)]
        for j in range(n_lanes):
            m.d.sync += p2_sq[j].eq(p1_q[j] * p1_q[j])
        sum1 = Mux(p2_first, 0, acc1) + sum(p2_q[j] for j in range(n_lanes))
        sum2 = Mux(p2_first, 0, acc2) + sum(p2_sq[j] for j in range(n_lanes))
        with m.If(p2_valid):
            m.d.sync += [acc1.eq(sum1), acc2.eq(sum2)]
            with m.If(p2_last):
                m.d.sync += [a_s1.eq(sum1), a_s2.eq(sum2), a_full.eq(1)]

        # -- 2. Variance v = L*s2 - s1**2, MSB-first shift-and-add. ------------------------------
        MW, VW = self.mag_width, self.var_width
        v_s1 = Signal(signed(self.s1_width))
        v_mag = Signal(unsigned(MW))        # |s1|
        v_s2 = Signal(unsigned(self.s2_width))
        v_x = Signal(unsigned(MW))          # |s1| bits, consumed MSB first
        v_l = Signal(unsigned(MW))          # L bits, consumed MSB first
        v_sq = Signal(unsigned(2 * MW))
        v_ls = Signal(unsigned(VW + 1))
        v_cnt = Signal(range(MW + 1))
        v_out = Signal(unsigned(VW))
        v_done = Signal()
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
            with m.State("SUB"):    # v = L*s2 - s1**2 >= 0
                m.d.sync += [v_out.eq(v_ls - v_sq), v_done.eq(1)]
                m.next = "DONE"
            with m.State("DONE"):   # hold v until the square-root stage takes it
                with m.If(~v_done):
                    m.next = "IDLE"

        # -- 3. Square root of v normalized into [2**30, 2**32). ---------------------------------
        r_v = Signal(unsigned(VW))
        r_s1 = Signal(signed(self.s1_width))
        r_zero = Signal()
        r_e = Signal(signed(8))
        r_rem = Signal(unsigned(SQRT_WIDTH + 1))
        r_res = Signal(unsigned(SQRT_WIDTH))      # res + bit < 2**31 while it runs
        r_bit = Signal(unsigned(SQRT_WIDTH - 1))
        r_done = Signal()
        blen = Signal(signed(8))   # bit_length(r_v)
        for k in range(VW):
            with m.If(r_v[k]):
                m.d.comb += blen.eq(k + 1)
        with m.FSM(name="sqrt"):
            with m.State("IDLE"):   # waiting for a variance
                with m.If(v_done):
                    m.d.sync += [v_done.eq(0), r_v.eq(v_out), r_s1.eq(v_s1),
                                 r_zero.eq(v_out == 0)]
                    m.next = "EXP"
            with m.State("EXP"):    # e = floor((32 - bit_length(v)) / 2)
                m.d.sync += r_e.eq((SQRT_WIDTH - blen) >> 1)
                m.next = "NORM"
            with m.State("NORM"):   # v * 4**e, truncated
                shl = (r_e << 1).as_unsigned()[:6]
                shr = (-(r_e << 1)).as_unsigned()[:6]
                m.d.sync += [
                    r_rem.eq(Mux(r_e >= 0, r_v << shl, r_v >> shr)[:SQRT_WIDTH]),
                    r_res.eq(0), r_bit.eq(1 << (SQRT_WIDTH - 2)),
                ]
                m.next = "ROOT"
            with m.State("ROOT"):   # one result bit per cycle, 16 cycles
                t = r_res + r_bit
                with m.If(r_rem >= t):
                    m.d.sync += [r_rem.eq(r_rem - t), r_res.eq((r_res >> 1) + r_bit)]
                with m.Else():
                    m.d.sync += r_res.eq(r_res >> 1)
                m.d.sync += r_bit.eq(r_bit >> 2)
                with m.If(r_bit == 1):
                    m.d.sync += r_done.eq(1)
                    m.next = "DONE"
            with m.State("DONE"):   # hold std until the reciprocal stage takes it
                with m.If(~r_done):
                    m.next = "IDLE"

        # -- 4. factor = floor(2**32 / std); a = L*factor, b = s1*factor. ------------------------
        d_std = Signal(unsigned(SQRT_WIDTH // 2))
        d_rem = Signal(unsigned(SQRT_WIDTH // 2 + 1))
        d_s1 = Signal(signed(self.s1_width))
        d_zero = Signal()
        d_e = Signal(signed(8))
        d_a = Signal(unsigned(self.a_width))
        d_b = Signal(signed(self.b_width))
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

        # -- 5. Output pass: a pipeline that advances when the output is free or taken. ---------
        advance = Signal()
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)

        c_busy = Signal()
        c_pos = Signal(range(cfg.max_len + n_lanes))
        c_idx = Signal(range(D))
        c_base = Signal(range(SLOTS * D))
        c_a = Signal(unsigned(self.a_width))
        c_sh = Signal(range(self.max_shift + 1))
        c_hb = Signal(signed(self.b_width + 1))     # 2**(sh-1) - b: rounding and offset
        d_sh = Signal(range(self.max_shift + 1))
        m.d.comb += d_sh.eq(cfg.norm_frac - d_e)
        c_last = c_pos + n_lanes >= L
        issue = c_busy & advance
        m.d.comb += row_end.eq(issue & c_last)
        with m.If(issue):
            with m.If(c_last):
                m.d.sync += [c_busy.eq(0), c_pos.eq(0), c_idx.eq(0),
                             c_base.eq(next_base(c_base))]
            with m.Else():
                m.d.sync += [c_pos.eq(c_pos + n_lanes), c_idx.eq(c_idx + 1)]
        # Take the next row's constants when idle or on the last read of the current row.
        with m.If(d_done & (~c_busy | (issue & c_last))):
            m.d.sync += [d_done.eq(0), c_busy.eq(1), c_a.eq(d_a), c_sh.eq(d_sh),
                         c_hb.eq(((Const(1, self.max_shift + 1) << d_sh) >> 1) - d_b)]
        m.d.comb += [
            row_r.addr.eq(c_base + c_idx), row_r.en.eq(advance),
            coef_r.addr.eq(c_idx), coef_r.en.eq(advance),
        ]

        # Stages (each advances with the output): S1 memory data out; S2 memory data
        # registered; S3 q*a; S4 zq = (q*a + hb) >> sh with hb = 2**(sh-1) - b per row;
        # S5 zq*gamma; output: saturate((zq*gamma + beta + 2**(T-1)) >> T).
        lanes_t = data.ArrayLayout(unsigned(1), n_lanes)
        gam_t = data.ArrayLayout(signed(cfg.gamma_width), n_lanes)
        bet_t = data.ArrayLayout(signed(cfg.beta_width), n_lanes)
        st = [{"valid": Signal(name=f"s{k}_valid"), "mask": Signal(lanes_t, name=f"s{k}_mask")}
              for k in range(1, 6)]
        s1_a, s1_hb, s1_sh = Signal.like(c_a), Signal.like(c_hb), Signal.like(c_sh)
        s2_a, s2_hb, s2_sh = Signal.like(c_a), Signal.like(c_hb), Signal.like(c_sh)
        s2_q = Signal(data.ArrayLayout(signed(cfg.in_width), n_lanes))
        s2_g, s2_beta = Signal(gam_t), Signal(bet_t)
        s3_hb, s3_sh = Signal.like(c_hb), Signal.like(c_sh)
        s3_n = Signal(data.ArrayLayout(signed(self.n_width), n_lanes))
        s3_g, s3_beta = Signal(gam_t), Signal(bet_t)
        s4_zq = Signal(data.ArrayLayout(signed(self.zq_width), n_lanes))
        s4_g, s4_beta = Signal(gam_t), Signal(bet_t)
        s5_pg = Signal(data.ArrayLayout(signed(self.zq_width + cfg.gamma_width), n_lanes))
        s5_beta = Signal(bet_t)
        shift = cfg.norm_frac + cfg.gamma_shift
        with m.If(advance):
            m.d.sync += [st[0]["valid"].eq(issue), self.o.valid.eq(st[4]["valid"])]
            for k in range(1, 5):
                m.d.sync += [st[k]["valid"].eq(st[k - 1]["valid"]),
                             st[k]["mask"].eq(st[k - 1]["mask"])]
            m.d.sync += [
                s1_a.eq(c_a), s1_hb.eq(c_hb), s1_sh.eq(c_sh),
                s2_a.eq(s1_a), s2_hb.eq(s1_hb), s2_sh.eq(s1_sh), s2_q.eq(row_r.data),
                s2_g.eq(coef_r.data.gamma), s2_beta.eq(coef_r.data.beta),
                s3_hb.eq(s2_hb), s3_sh.eq(s2_sh), s3_g.eq(s2_g), s3_beta.eq(s2_beta),
                s4_g.eq(s3_g), s4_beta.eq(s3_beta),
                s5_beta.eq(s4_beta),
            ]
            for j in range(n_lanes):
                p = s5_pg[j] + s5_beta[j] + (1 << (shift - 1))
                m.d.sync += [
                    st[0]["mask"][j].eq(c_pos + j < L),
                    s3_n[j].eq(s2_q[j] * s2_a),
                    s4_zq[j].eq((s3_n[j] + s3_hb) >> s3_sh),
                    s5_pg[j].eq(s4_zq[j] * s4_g[j]),
                    self.o.payload[j].eq(Mux(st[4]["mask"][j],
                                             saturate(p >> shift, cfg.out_width), 0)),
                ]
        return m
